"""The µGraph file format (JSON, versioned) and its loader.

A file holds one input program (optional) and a list of candidate µGraphs equivalent to it::

    {"format": "mirage-mugraph", "version": 1,
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
file and the offending field.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mirage.errors import InputError
from mirage.ir import infer
from mirage.ir.check import check
from mirage.ir.graph import BlockGraph, BlockNode, KernelGraph, KernelNode, Ref
from mirage.ir.infer import IRError
from mirage.ir.target import DEFAULT_TARGET, Target

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
    """A loaded file: the input program (if stored), the candidates, and provenance."""

    graphs: tuple[KernelGraph, ...]
    program: KernelGraph | None = None
    meta: dict = field(default_factory=dict)


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


def dumps(graphs, program: KernelGraph | None = None, meta: dict | None = None) -> str:
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "meta": meta or {},
        "program": None if program is None else graph_to_dict(program),
        "graphs": [graph_to_dict(g) for g in graphs],
    }
    return json.dumps(doc, indent=1)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save(path, graphs, program: KernelGraph | None = None, meta: dict | None = None) -> None:
    atomic_write_text(path, dumps(graphs, program, meta))


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
            self.fail(where, f"expected an integer, got {value!r}")
        return value

    def list_(self, value, where: str, length: int | None = None) -> list:
        if not isinstance(value, list):
            self.fail(where, f"expected a list, got {type(value).__name__}")
        if length is not None and len(value) != length:
            self.fail(where, f"expected {length} entries, got {len(value)}")
        return value

    def str_(self, value, where: str) -> str:
        if not isinstance(value, str):
            self.fail(where, f"expected a string, got {value!r}")
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
        if errors:
            e = errors[0]
            self.fail(f"{where}.{e.where}" if e.where else where, f"{e.rule.value}: {e.message}")
        return graph


def loads(text: str, file: str = "<string>", target: Target = DEFAULT_TARGET) -> MugraphFile:
    r = _Reader(file)
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        r.fail("", f"not valid JSON: {e}")
    doc = r.obj(doc, "")
    if r.key(doc, "format", "") != FORMAT:
        r.fail("format", f"expected {FORMAT!r}, got {doc['format']!r}")
    version = r.key(doc, "version", "")
    if version != VERSION:
        r.fail("version", f"unsupported version {version!r} (this code reads {VERSION})")
    meta = r.obj(doc.get("meta", {}), "meta")
    program_doc = doc.get("program")
    program = None if program_doc is None else r.graph(program_doc, "program", target)
    items = r.list_(r.key(doc, "graphs", ""), "graphs")
    graphs = tuple(r.graph(g, f"graphs[{i}]", target) for i, g in enumerate(items))
    return MugraphFile(graphs, program, meta)


def graph_from_dict(d: dict, target: Target = DEFAULT_TARGET, file: str = "<dict>"
                    ) -> KernelGraph:
    """The inverse of ``graph_to_dict``: one graph (a checkpoint's, a benchmark row's), read and
    checked as ``loads`` reads and checks each graph of a file."""
    return _Reader(file).graph(d, "graph", target)


def load(path: str | Path, target: Target = DEFAULT_TARGET) -> MugraphFile:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise MugraphFormatError(str(path), "", f"cannot read: {e}") from None
    return loads(text, str(path), target)
