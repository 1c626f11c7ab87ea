"""The µGraph file format (JSON, versioned) and its loader.

A file holds one input program (optional) and a list of candidate µGraphs equivalent to it::

    {"format": "mirage-mugraph", "version": 1,
     "target": "h100",   (optional: the GPU the candidates were searched and checked for)
     "meta": {...free-form provenance: case, batch, command...},
     "program": GRAPH or null,
     "graphs": [GRAPH, ...]}

    GRAPH   = {"nodes": [NODE, ...], "outputs": [[node, index], ...]}
    NODE    = {"op": "input", "name": "X", "shape": [16, 4096], "dtype": "fp16"}
            | {"op": "matmul", "args": [[0, 0], [1, 0]], "attrs": {}}
            | {"op": "customized", "args": [[0, 0], [1, 0]], "block": BLOCK}
    BLOCK   = {"grid": [gx, gy, gz], "forloop_range": R, "nodes": [BNODE, ...]}
    BNODE   = {"op": "input", "source": 0, "imap": [null, 1, null], "fmap": 1}
            | {"op": "matmul", "args": [0, 1], "attrs": {}}
            | {"op": "output", "args": [5], "omap": [1, null, null]}

Types other than the inputs' are not stored: the loader derives them, so a file cannot carry a
shape that disagrees with the rules. Any defect in a file raises ``MugraphFormatError`` naming the
file and the offending field, with one exception: a candidate whose only defect is that its tiles
exceed the loading target's shared memory (a file written for an H100 read for an A100) is left
out of ``graphs`` and listed in ``unfit`` with its index in the file and the reason; the rest load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mirage.errors import InputError
from mirage.ir import infer
from mirage.ir.check import check
from mirage.ir.graph import BlockGraph, BlockNode, KernelGraph, KernelNode, Ref
from mirage.ir.infer import IRError, Rule
from mirage.ir.target import Target, resolve_target

FORMAT = "mirage-mugraph"
VERSION = 1


class MugraphFormatError(InputError):
    """A µGraph file is malformed; ``file`` and ``field`` say where."""

    def __init__(self, file: str, field_path: str, message: str):
        self.file = file
        self.field = field_path
        self.message = message
        super().__init__(f"{file}: {field_path or '<top>'}: {message}")


@dataclass(frozen=True)
class MugraphFile:
    """A loaded file: the input program (if stored), the candidates that fit the loading target,
    provenance, the target the file says it was written for (``None`` in files from before that
    field), and ``unfit``: ``(index in the file, reason)`` of each candidate left out because
    its tiles exceed the loading target's shared memory."""

    graphs: tuple[KernelGraph, ...]
    program: KernelGraph | None = None
    meta: dict = field(default_factory=dict)
    target: str | None = None
    unfit: tuple[tuple[int, str], ...] = ()


# --- writing -----------------------------------------------------------------------------------


def _block_node_to_dict(n: BlockNode) -> dict:
    if n.op == "input":
        return {"op": "input", "source": n.source, "imap": list(n.imap), "fmap": n.fmap}
    if n.op == "output":
        return {"op": "output", "args": list(n.args), "omap": list(n.omap)}
    return {"op": n.op, "args": list(n.args), "attrs": dict(n.attrs)}


def _kernel_node_to_dict(n: KernelNode) -> dict:
    if n.op == "input":
        t = n.outputs[0]
        return {"op": "input", "name": n.name, "shape": list(t.shape), "dtype": t.dtype}
    d: dict[str, Any] = {"op": n.op, "args": [[r.node, r.index] for r in n.args]}
    if n.block is not None:
        b = n.block
        d["block"] = {
            "grid": list(b.grid),
            "forloop_range": b.forloop_range,
            "nodes": [_block_node_to_dict(x) for x in b.nodes],
        }
    else:
        d["attrs"] = dict(n.attrs)
    return d


def graph_to_dict(g: KernelGraph) -> dict:
    return {
        "nodes": [_kernel_node_to_dict(n) for n in g.nodes],
        "outputs": [[r.node, r.index] for r in g.outputs],
    }


def _target_name(target: Target | str | None) -> str:
    return resolve_target(target).name


def dumps(graphs, program: KernelGraph | None = None, meta: dict | None = None,
          target: Target | str | None = None) -> str:
    """The file text; ``target`` (default ``default_target()``) is recorded as the GPU the
    candidates were searched and validated for."""
    graphs = list(graphs)
    for k, g in enumerate([*graphs, *([] if program is None else [program])]):
        if not isinstance(g, KernelGraph):
            where = f"graphs[{k}]" if k < len(graphs) else "program"
            raise InputError(f"{where}: expected a KernelGraph, got {type(g).__name__}")
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "target": _target_name(target),
        "meta": meta or {},
        "program": None if program is None else graph_to_dict(program),
        "graphs": [graph_to_dict(g) for g in graphs],
    }
    return json.dumps(doc, indent=1)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write via a temporary file, fsync and rename (``mirage.files``), so readers never see
    half a file and the result keeps the mode a user expects."""
    from mirage.files import atomic_write_text as write

    write(path, text)


def save(path, graphs, program: KernelGraph | None = None, meta: dict | None = None,
         target: Target | str | None = None) -> None:
    atomic_write_text(path, dumps(graphs, program, meta, target))


# --- reading -----------------------------------------------------------------------------------


class _Reader:
    """Typed accessors that raise ``MugraphFormatError`` with the field path."""

    def __init__(self, file: str):
        self.file = file

    def fail(self, where: str, message: str):
        raise MugraphFormatError(self.file, where, message)

    def obj(self, value, where: str) -> dict:
        if not isinstance(value, dict):
            self.fail(where, f"expected an object, got {type(value).__name__}")
        return value

    def key(self, d: dict, name: str, where: str):
        if name not in d:
            self.fail(f"{where}.{name}" if where else name, "missing field")
        return d[name]

    def int_(self, value, where: str, allow_none: bool = False) -> int | None:
        if value is None and allow_none:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(where, f"expected an int, got {infer._shown(value)}")
        return value

    def list_(self, value, where: str, length: int | None = None) -> list:
        if not isinstance(value, list):
            self.fail(where, f"expected a list, got {type(value).__name__}")
        if length is not None and len(value) != length:
            self.fail(where, f"expected {length} entries, got {len(value)}")
        return value

    def str_(self, value, where: str) -> str:
        if not isinstance(value, str):
            self.fail(where, f"expected a string, got {infer._shown(value)}")
        return value

    def ints(self, value, where: str, length: int | None = None, allow_none=False) -> tuple:
        items = self.list_(value, where, length)
        return tuple(self.int_(x, f"{where}[{i}]", allow_none) for i, x in enumerate(items))

    def attrs(self, value, where: str) -> dict:
        d = self.obj(value, where)
        return {self.str_(k, where): self.int_(v, f"{where}.{k}") for k, v in d.items()}

    def ref(self, value, where: str) -> Ref:
        node, index = self.ints(value, where, 2)
        return Ref(node, index)

    def block_node(self, d, where: str) -> BlockNode:
        d = self.obj(d, where)
        op = self.str_(self.key(d, "op", where), f"{where}.op")
        t = infer.TensorType((1,))  # placeholder: rebuild_block_graph derives the real type
        if op == "input":
            return BlockNode(
                "input",
                (),
                t,
                source=self.int_(self.key(d, "source", where), f"{where}.source"),
                imap=self.ints(self.key(d, "imap", where), f"{where}.imap", 3, True),
                fmap=self.int_(self.key(d, "fmap", where), f"{where}.fmap", True),
            )
        args = self.ints(self.key(d, "args", where), f"{where}.args")
        if op == "output":
            omap = self.ints(self.key(d, "omap", where), f"{where}.omap", 3, True)
            return BlockNode("output", args, t, omap=omap)
        attrs = self.attrs(d.get("attrs", {}), f"{where}.attrs")
        return BlockNode(op, args, t, tuple(sorted(attrs.items())))

    def block(self, d, where: str) -> BlockGraph:
        d = self.obj(d, where)
        grid = self.ints(self.key(d, "grid", where), f"{where}.grid", 3)
        r = self.int_(self.key(d, "forloop_range", where), f"{where}.forloop_range")
        items = self.list_(self.key(d, "nodes", where), f"{where}.nodes")
        nodes = tuple(self.block_node(x, f"{where}.nodes[{i}]") for i, x in enumerate(items))
        return BlockGraph(grid, r, nodes)

    def kernel_node(self, prior: tuple[KernelNode, ...], d, where: str) -> KernelNode:
        d = self.obj(d, where)
        op = self.str_(self.key(d, "op", where), f"{where}.op")
        if op == "input":
            shape = self.ints(self.key(d, "shape", where), f"{where}.shape")
            dtype = self.str_(self.key(d, "dtype", where), f"{where}.dtype")
            name = self.str_(d.get("name", ""), f"{where}.name")
            return infer.kernel_input(shape, dtype, name)
        items = self.list_(self.key(d, "args", where), f"{where}.args")
        args = [self.ref(x, f"{where}.args[{i}]") for i, x in enumerate(items)]
        if op == "customized":
            block = self.block(self.key(d, "block", where), f"{where}.block")
            return infer.customized_op(prior, args, block)
        attrs = self.attrs(d.get("attrs", {}), f"{where}.attrs")
        return infer.kernel_op(prior, op, args, attrs)

    def graph(self, d, where: str, target: Target) -> KernelGraph:
        graph, unfit = self.graph_or_unfit(d, where, target, allow_unfit=False)
        return graph

    def graph_or_unfit(self, d, where: str, target: Target, allow_unfit: bool = True
                       ) -> tuple[KernelGraph, str | None]:
        """The graph, and the reason it does not fit ``target``'s shared memory (``None`` when
        it fits); any other defect fails the file."""
        d = self.obj(d, where)
        items = self.list_(self.key(d, "nodes", where), f"{where}.nodes")
        nodes: list[KernelNode] = []
        for i, x in enumerate(items):
            node_where = f"{where}.nodes[{i}]"
            try:
                nodes.append(self.kernel_node(tuple(nodes), x, node_where))
            except IRError as e:
                self.fail(f"{node_where}{'.' + e.where if e.where else ''}",
                          f"{e.rule.value}: {e.message}")
        outs = self.list_(self.key(d, "outputs", where), f"{where}.outputs")
        refs = tuple(self.ref(x, f"{where}.outputs[{i}]") for i, x in enumerate(outs))
        graph = KernelGraph(tuple(nodes), refs)
        errors = check(graph, target)
        if errors and allow_unfit and all(e.rule is Rule.SHARED_MEMORY for e in errors):
            return graph, str(errors[0])
        if errors:
            e = errors[0]
            self.fail(f"{where}.{e.where}" if e.where else where, f"{e.rule.value}: {e.message}")
        return graph, None


def loads(text: str, file: str = "<string>", target: Target | None = None) -> MugraphFile:
    """Parse and check a file's text for ``target`` (default ``default_target()``)."""
    target = resolve_target(target)
    r = _Reader(file)
    if not isinstance(text, str):
        r.fail("", f"expected text, got {infer._shown(text)}")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as e:  # ValueError: JSON syntax, an int of 4300+ digits
        r.fail("", f"not valid JSON: {str(e)[:200]}")
    doc = r.obj(doc, "")
    if r.key(doc, "format", "") != FORMAT:
        r.fail("format", f"expected {FORMAT!r}, got {infer._shown(doc['format'])}")
    version = r.key(doc, "version", "")
    if isinstance(version, bool) or not isinstance(version, int) or version != VERSION:
        r.fail("version", f"unsupported version {infer._shown(version)} (this code reads "
               f"{VERSION})")
    written_for = doc.get("target")
    if written_for is not None:
        written_for = r.str_(written_for, "target")[:64]
    meta = r.obj(doc.get("meta", {}), "meta")
    program_doc = doc.get("program")
    program = None if program_doc is None else r.graph(program_doc, "program", target)
    items = r.list_(r.key(doc, "graphs", ""), "graphs")
    graphs, unfit = [], []
    for i, g in enumerate(items):
        graph, reason = r.graph_or_unfit(g, f"graphs[{i}]", target)
        if reason is None:
            graphs.append(graph)
        else:
            unfit.append((i, reason))
    return MugraphFile(tuple(graphs), program, meta, written_for, tuple(unfit))


def graph_from_dict(d: dict, target: Target | None = None, file: str = "<dict>"
                    ) -> KernelGraph:
    """The inverse of ``graph_to_dict``: one graph (a checkpoint's, a benchmark row's), read and
    checked as ``loads`` reads and checks each graph of a file."""
    target = resolve_target(target)
    return _Reader(file).graph(d, "graph", target)


def load(path: str | Path, target: Target | None = None) -> MugraphFile:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise MugraphFormatError(str(path), "", f"cannot read: {e}") from None
    return loads(text, str(path), target)
