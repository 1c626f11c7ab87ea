"""Type inference for IR nodes: the one place that derives shapes and tile shapes.

Both the builder API and the JSON loader create nodes through these functions, and the validity
checker re-runs them, so a stored type can never disagree with the rules. Every failure raises
``IRError`` carrying the name of the rule that was broken.
"""

from __future__ import annotations

import math
import numbers
import unicodedata
from enum import Enum

from mirage.errors import InputError
from mirage.ir.graph import (
    DTYPE_BYTES,
    GRID_AXES,
    AxisMap,
    BlockGraph,
    BlockNode,
    KernelNode,
    Ref,
    TensorType,
    attrs_of,
)
from mirage.ops import Level, Prop, ShapeError, get


class Rule(Enum):
    """The named validity rules. Every rejection of a graph names one of these."""

    UNKNOWN_OP = "unknown op"
    WRONG_LEVEL = "op not allowed at this level"
    WRONG_ARITY = "wrong number of operands"
    BAD_ATTRIBUTE = "missing or unexpected attribute"
    BAD_REFERENCE = "operand refers to a missing or later node"
    BAD_TYPE = "bad shape or dtype declaration"
    SHAPE_MISMATCH = "shape mismatch"
    DTYPE_MISMATCH = "dtype mismatch"
    BAD_MAP = "imap/fmap/omap names a missing or repeated dim"
    UNEVEN_SPLIT = "uneven split"
    OMAP_COVERAGE = "omap does not cover a grid axis"
    ACCUMULATOR_PATH = "input-to-output path without exactly one accumulator"
    SHARED_MEMORY = "tiles exceed the per-block shared-memory limit"
    BAD_OUTPUTS = "bad graph outputs"
    TYPE_DISAGREES = "stored type disagrees with the derived one"
    BAD_NAME = "bad tensor name"


class IRError(InputError):
    """A node or graph breaks ``rule``; ``where`` locates it (e.g. ``nodes[3]``)."""

    def __init__(self, rule: Rule, message: str, where: str = ""):
        self.rule = rule
        self.message = message
        self.where = where
        super().__init__(f"{where + ': ' if where else ''}{rule.value}: {message}")

    def at(self, where: str) -> IRError:
        inner = f"{where}.{self.where}" if self.where else where
        return IRError(self.rule, self.message, inner)


# Limits on sizes a graph may declare or derive: a dim fits a 32-bit signed index (what the
# generated kernels use), and no tensor has more than 2**40 elements (8 TiB of fp64), so size
# arithmetic downstream never meets an absurd number.
MAX_DIM = 2**31 - 1
MAX_NUMEL = 2**40
MAX_NAME = 128
MAX_RANK = 4


def _shown(value) -> str:
    """``float 16.7``: the type and a bounded repr of a rejected value, for a one-line message."""
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


def exact_int(value, where: str, rule: Rule = Rule.BAD_TYPE, lo: int | None = None,
              hi: int | None = None, allow_none: bool = False) -> int | None:
    """``value`` as an ``int`` if it is one (numpy integers too; never a bool, float or str) and
    lies in ``[lo, hi]``; otherwise ``IRError(rule)`` located at ``where``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise IRError(rule, f"expected an int, got {_shown(value)}", where)
    value = int(value)
    if lo is not None and value < lo:
        raise IRError(rule, f"{value} is below the minimum {lo}", where)
    if hi is not None and value > hi:
        raise IRError(rule, f"{value} exceeds the maximum {hi}", where)
    return value


def int_sequence(value, where: str, rule: Rule = Rule.BAD_TYPE) -> tuple:
    """A list or tuple (or a 1-D numpy array; not a string, a scalar or a mapping), as a
    tuple."""
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 1:
        return tuple(value)
    if not isinstance(value, (list, tuple)):
        raise IRError(rule, f"expected a list of ints, got {_shown(value)}", where)
    return tuple(value)


def check_name(name, where: str = "name") -> str:
    """A user's tensor name: any printable text up to ``MAX_NAME`` characters. Generated code
    never uses it as written (``codegen`` mangles it to an ASCII identifier)."""
    if not isinstance(name, str):
        raise IRError(Rule.BAD_NAME, f"expected a string, got {_shown(name)}", where)
    if len(name) > MAX_NAME:
        raise IRError(Rule.BAD_NAME, f"{len(name)} characters > the limit of {MAX_NAME}", where)
    for k, ch in enumerate(name):
        # C*: control, format, surrogate, private-use and unassigned code points
        if unicodedata.category(ch).startswith("C"):
            raise IRError(Rule.BAD_NAME, f"character {k} ({ord(ch):#x}) is not printable", where)
    return name


def check_dtype(dtype, where: str = "dtype") -> str:
    if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
        raise IRError(Rule.BAD_TYPE, f"unknown dtype {_shown(dtype)} (one of "
                      f"{', '.join(DTYPE_BYTES)})", where)
    return dtype


def check_shape(shape, where: str = "shape") -> tuple[int, ...]:
    """1-4 exact positive ints, each at most ``MAX_DIM``, at most ``MAX_NUMEL`` elements."""
    dims = int_sequence(shape, where)
    if not 1 <= len(dims) <= MAX_RANK:
        raise IRError(Rule.BAD_TYPE, f"shape {dims} must have 1-{MAX_RANK} positive dims",
                      where)
    out = tuple(exact_int(d, f"{where}[{k}]", lo=1, hi=MAX_DIM) for k, d in enumerate(dims))
    _check_numel(out, where)
    return out


def _check_numel(shape: tuple[int, ...], where: str) -> None:
    numel = math.prod(shape)
    if numel > MAX_NUMEL:
        raise IRError(Rule.BAD_TYPE, f"shape {shape} has {numel} elements > the limit of "
                      f"2**40", where)


def check_type(t: TensorType, where: str = "shape") -> TensorType:
    dtype = check_dtype(t.dtype, "dtype")
    return TensorType(check_shape(t.shape, where), dtype)


def check_attrs(attrs, where: str = "attrs") -> tuple[tuple[str, int], ...]:
    """An op's integer attributes (a mapping or pairs), each an exact int."""
    if isinstance(attrs, dict):
        items = list(attrs.items())
    elif isinstance(attrs, (tuple, list)) and all(
            isinstance(p, (tuple, list)) and len(p) == 2 for p in attrs):
        items = [tuple(p) for p in attrs]
    else:
        raise IRError(Rule.BAD_ATTRIBUTE, f"expected a mapping, got {_shown(attrs)}", where)
    out = {}
    for k, v in items:
        if not isinstance(k, str):
            raise IRError(Rule.BAD_ATTRIBUTE, f"attribute name {_shown(k)} is not a string",
                          where)
        out[k] = exact_int(v, f"{where}.{k}", Rule.BAD_ATTRIBUTE, -MAX_DIM, MAX_DIM)
    return attrs_of(out)


def _apply_rule(op: str, level: Level, arg_types: list[TensorType], attrs: dict) -> TensorType:
    if not isinstance(op, str):
        raise IRError(Rule.UNKNOWN_OP, f"op must be a string, got {_shown(op)}")
    try:
        rec = get(op)
    except KeyError:
        raise IRError(Rule.UNKNOWN_OP, repr(op)) from None
    if level not in rec.levels:
        raise IRError(Rule.WRONG_LEVEL, f"{op} is not a {level.name.lower()}-level op")
    if len(arg_types) != rec.arity:
        raise IRError(Rule.WRONG_ARITY, f"{op} takes {rec.arity} operands, got {len(arg_types)}")
    if set(attrs) != set(rec.attrs):
        raise IRError(Rule.BAD_ATTRIBUTE, f"{op} needs attributes {list(rec.attrs)}, got {attrs}")
    dtypes = {t.dtype for t in arg_types}
    if len(dtypes) > 1:
        raise IRError(Rule.DTYPE_MISMATCH, f"{op} operands have dtypes {sorted(dtypes)}")
    try:
        shape = rec.shape([t.shape for t in arg_types], attrs)
    except ShapeError as e:
        raise IRError(Rule.SHAPE_MISMATCH, f"{op}: {e}") from None
    _check_numel(shape, "")
    return TensorType(shape, arg_types[0].dtype)


# --- kernel level ------------------------------------------------------------------------------


def kernel_input(shape, dtype: str = "fp16", name: str = "", where: str = "shape"
                 ) -> KernelNode:
    """A kernel input; ``where`` names the shape argument in errors (``dims`` for the builder)."""
    t = TensorType(check_shape(shape, where), check_dtype(dtype))
    return KernelNode("input", (), (t,), name=check_name(name))


def _ref_type(prior: tuple[KernelNode, ...], ref: Ref) -> TensorType:
    if not isinstance(ref, Ref) or any(isinstance(v, bool) or not isinstance(v, int)
                                       for v in (ref.node, ref.index)):
        raise IRError(Rule.BAD_REFERENCE, f"operand {_shown(ref)} is not a Ref of two ints")
    if not (0 <= ref.node < len(prior)) or not (0 <= ref.index < len(prior[ref.node].outputs)):
        raise IRError(Rule.BAD_REFERENCE, f"operand {ref} does not exist yet")
    return prior[ref.node].outputs[ref.index]


def kernel_op(prior: tuple[KernelNode, ...], op: str, args, attrs=()) -> KernelNode:
    """A pre-defined kernel op over earlier nodes ``prior``."""
    args = int_sequence(args, "args", Rule.BAD_REFERENCE)
    attrs = check_attrs(attrs)
    arg_types = [_ref_type(prior, r) for r in args]
    out = _apply_rule(op, Level.KERNEL, arg_types, dict(attrs))
    return KernelNode(op, args, (out,), attrs)


def customized_op(prior: tuple[KernelNode, ...], args, block: BlockGraph) -> KernelNode:
    """A graph-defined op: its outputs are the block graph's outputs laid out by their omaps."""
    args = int_sequence(args, "args", Rule.BAD_REFERENCE)
    arg_types = tuple(_ref_type(prior, r) for r in args)
    rebuilt = _rebuilt(block, arg_types)
    return KernelNode("customized", args, block_output_types(rebuilt), block=rebuilt)


_REBUILT: dict[tuple, BlockGraph | IRError] = {}
_REBUILT_MAX = 100_000


def _rebuilt(block: BlockGraph, arg_types: tuple[TensorType, ...]) -> BlockGraph:
    """``rebuild_block_graph``, memoised: the search and the checker re-derive the same block
    for the same operand types many times over (a result or an error, both deterministic)."""
    key = (block, arg_types)
    try:
        found = _REBUILT.get(key)
    except TypeError:  # a hand-made block holding lists: rebuild it, it is not memoisable
        return rebuild_block_graph(block, list(arg_types))
    if found is None:
        try:
            found = rebuild_block_graph(block, list(arg_types))
        except IRError as e:
            found = e
        if len(_REBUILT) >= _REBUILT_MAX:
            _REBUILT.clear()
        _REBUILT[key] = found
    if isinstance(found, IRError):
        raise IRError(found.rule, found.message, found.where)  # a fresh one: no traceback pile-up
    return found


# --- block level -------------------------------------------------------------------------------


def check_grid(grid, forloop_range, where: str = "grid",
               range_where: str = "forloop_range") -> tuple[tuple[int, int, int], int]:
    """Three exact positive block counts and a positive loop range, each at most ``MAX_DIM``."""
    sizes = int_sequence(grid, where, Rule.BAD_MAP)
    if len(sizes) != GRID_AXES:
        raise IRError(Rule.BAD_MAP, f"grid {sizes} must be three positive sizes", where)
    sizes = tuple(exact_int(g, f"{where}[{k}]", Rule.BAD_MAP, 1, MAX_DIM)
                  for k, g in enumerate(sizes))
    r = exact_int(forloop_range, range_where, Rule.BAD_MAP, 1, MAX_DIM)
    if math.prod(sizes) * r > MAX_NUMEL:
        raise IRError(Rule.BAD_MAP, f"grid {sizes} x loop {r} exceeds 2**40 steps", where)
    return sizes, r


def _check_axis_map(amap, rank: int, what: str) -> AxisMap:
    if amap is None or not isinstance(amap, (tuple, list)) or len(amap) != GRID_AXES:
        raise IRError(Rule.BAD_MAP, f"{what} must name a dim or None for each of 3 grid axes")
    dims = [exact_int(d, f"{what}[{k}]", Rule.BAD_MAP, allow_none=True)
            for k, d in enumerate(amap)]
    used = [d for d in dims if d is not None]
    if any(not 0 <= d < rank for d in used):
        raise IRError(Rule.BAD_MAP, f"{what} {tuple(amap)} names a dim outside rank {rank}")
    if len(set(used)) != len(used):
        raise IRError(Rule.BAD_MAP, f"{what} {tuple(amap)} maps two grid axes to one dim")
    return tuple(dims)


def tile_type(tensor: TensorType, grid, forloop_range: int, imap, fmap) -> TensorType:
    """The tile one block sees in one iteration."""
    shape = list(tensor.shape)
    for axis, dim in enumerate(imap):
        if dim is not None:
            if shape[dim] % grid[axis]:
                raise IRError(
                    Rule.UNEVEN_SPLIT,
                    f"dim {dim} of {tensor} is not divisible by grid axis {axis} ({grid[axis]})",
                )
            shape[dim] //= grid[axis]
    if fmap is not None:
        if shape[fmap] % forloop_range:
            raise IRError(
                Rule.UNEVEN_SPLIT,
                f"dim {fmap} of the tile {shape} is not divisible by the loop range "
                f"{forloop_range}",
            )
        shape[fmap] //= forloop_range
    return TensorType(tuple(shape), tensor.dtype)


def block_input(
    tensor: TensorType, source: int, grid, forloop_range: int, imap, fmap
) -> BlockNode:
    grid, forloop_range = check_grid(grid, forloop_range)
    source = exact_int(source, "source", Rule.BAD_REFERENCE, 0)
    imap = _check_axis_map(imap, len(tensor.shape), "imap")
    fmap = exact_int(fmap, "fmap", Rule.BAD_MAP, allow_none=True)
    if fmap is not None and not 0 <= fmap < len(tensor.shape):
        raise IRError(Rule.BAD_MAP, f"fmap {fmap} names a dim outside rank {len(tensor.shape)}")
    t = tile_type(tensor, grid, forloop_range, imap, fmap)
    return BlockNode("input", (), t, source=source, imap=imap, fmap=fmap)


def _block_arg_types(prior, args) -> list[TensorType]:
    out = []
    for a in args:
        if isinstance(a, bool) or not isinstance(a, int) or not 0 <= a < len(prior):
            raise IRError(Rule.BAD_REFERENCE, f"operand {a} does not exist yet")
        if prior[a].op == "output":
            raise IRError(Rule.BAD_REFERENCE, f"operand {a} is a block output")
        out.append(prior[a].type)
    return out


def block_op(prior: tuple[BlockNode, ...], op: str, args, attrs=()) -> BlockNode:
    """A block-level op or accumulator over earlier block nodes ``prior``."""
    args = tuple(exact_int(a, f"args[{k}]", Rule.BAD_REFERENCE)
                 for k, a in enumerate(int_sequence(args, "args", Rule.BAD_REFERENCE)))
    attrs = check_attrs(attrs)
    if op in ("input", "output"):
        raise IRError(Rule.WRONG_LEVEL, f"use block_input/block_output for {op}")
    t = _apply_rule(op, Level.BLOCK, _block_arg_types(prior, args), dict(attrs))
    return BlockNode(op, args, t, attrs)


def block_output(prior: tuple[BlockNode, ...], arg: int, omap) -> BlockNode:
    arg = exact_int(arg, "args[0]", Rule.BAD_REFERENCE)
    (t,) = _block_arg_types(prior, (arg,))
    omap = _check_axis_map(omap, len(t.shape), "omap")
    return BlockNode("output", (arg,), t, omap=omap)


def output_type(node: BlockNode, grid) -> TensorType:
    """The device tensor a block output writes: its tile repeated along the omap'd dims."""
    shape = list(node.type.shape)
    for axis, dim in enumerate(node.omap):
        if dim is not None:
            shape[dim] *= grid[axis]
    if any(d > MAX_DIM for d in shape):
        raise IRError(Rule.BAD_TYPE, f"output shape {tuple(shape)} has a dim > {MAX_DIM}")
    _check_numel(tuple(shape), "")
    return TensorType(tuple(shape), node.type.dtype)


def block_output_types(block: BlockGraph) -> tuple[TensorType, ...]:
    return tuple(output_type(block.nodes[i], block.grid) for i in block.output_ids)


def rebuild_block_graph(block: BlockGraph, operand_types: list[TensorType]) -> BlockGraph:
    """Re-derive every tile type of ``block`` for operands of ``operand_types``."""
    if not isinstance(block, BlockGraph):
        raise IRError(Rule.BAD_ATTRIBUTE, f"block must be a BlockGraph, got {_shown(block)}")
    grid, forloop_range = check_grid(block.grid, block.forloop_range, "block.grid",
                                     "block.forloop_range")
    nodes: list[BlockNode] = []
    for i, n in enumerate(int_sequence(block.nodes, "block.nodes", Rule.BAD_ATTRIBUTE)):
        try:
            if not isinstance(n, BlockNode):
                raise IRError(Rule.BAD_ATTRIBUTE, f"expected a BlockNode, got {_shown(n)}")
            if n.op == "input":
                if (isinstance(n.source, bool) or not isinstance(n.source, int)
                        or not 0 <= n.source < len(operand_types)):
                    raise IRError(Rule.BAD_REFERENCE, f"block input source {n.source} missing")
                new = block_input(
                    operand_types[n.source], n.source, grid, forloop_range, n.imap, n.fmap
                )
            elif n.op == "output":
                if not isinstance(n.args, (tuple, list)) or len(n.args) != 1:
                    raise IRError(Rule.WRONG_ARITY, "a block output takes one operand")
                new = block_output(tuple(nodes), n.args[0], n.omap)
            else:
                new = block_op(tuple(nodes), n.op, n.args, n.attrs)
        except IRError as e:
            raise e.at(f"block.nodes[{i}]") from None
        nodes.append(new)
    used = {n.source for n in nodes if n.op == "input"}
    if used != set(range(len(operand_types))):
        raise IRError(Rule.BAD_REFERENCE, f"block inputs use operands {sorted(used)} "
                      f"of {len(operand_types)}")
    if not any(n.op == "output" for n in nodes):
        raise IRError(Rule.BAD_OUTPUTS, "block graph has no output")
    return BlockGraph(grid, forloop_range, tuple(nodes))


def is_accumulator(op: str) -> bool:
    return op not in ("input", "output") and get(op).has(Prop.ACCUMULATOR)


def duplicate_input_name(nodes) -> str | None:
    """The first non-empty input name given to two kernel inputs, if any: a compiled µGraph is
    called by its input names, so two inputs may not share one."""
    seen: set[str] = set()
    for n in nodes:
        if n.op == "input" and n.name:
            if n.name in seen:
                return n.name
            seen.add(n.name)
    return None
