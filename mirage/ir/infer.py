"""Type inference for IR nodes: the one place that derives shapes and tile shapes.

Both the builder API and the JSON loader create nodes through these functions, and the validity
checker re-runs them, so a stored type can never disagree with the rules. Every failure raises
``IRError`` carrying the name of the rule that was broken.
"""

from __future__ import annotations

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


def check_type(t: TensorType) -> TensorType:
    if t.dtype not in DTYPE_BYTES:
        raise IRError(Rule.BAD_TYPE, f"unknown dtype {t.dtype!r}")
    if not 1 <= len(t.shape) <= 4 or any(int(d) < 1 for d in t.shape):
        raise IRError(Rule.BAD_TYPE, f"shape {t.shape} must have 1-4 positive dims")
    return TensorType(tuple(int(d) for d in t.shape), t.dtype)


def _apply_rule(op: str, level: Level, arg_types: list[TensorType], attrs: dict) -> TensorType:
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
    return TensorType(shape, arg_types[0].dtype)


# --- kernel level ------------------------------------------------------------------------------


def kernel_input(shape, dtype: str = "fp16", name: str = "") -> KernelNode:
    t = check_type(TensorType(tuple(shape), dtype))
    return KernelNode("input", (), (t,), name=name)


def _ref_type(prior: tuple[KernelNode, ...], ref: Ref) -> TensorType:
    if not (0 <= ref.node < len(prior)) or not (0 <= ref.index < len(prior[ref.node].outputs)):
        raise IRError(Rule.BAD_REFERENCE, f"operand {ref} does not exist yet")
    return prior[ref.node].outputs[ref.index]


def kernel_op(prior: tuple[KernelNode, ...], op: str, args, attrs=()) -> KernelNode:
    """A pre-defined kernel op over earlier nodes ``prior``."""
    args = tuple(args)
    attrs = attrs_of(attrs)
    arg_types = [_ref_type(prior, r) for r in args]
    out = _apply_rule(op, Level.KERNEL, arg_types, dict(attrs))
    return KernelNode(op, args, (out,), attrs)


def customized_op(prior: tuple[KernelNode, ...], args, block: BlockGraph) -> KernelNode:
    """A graph-defined op: its outputs are the block graph's outputs laid out by their omaps."""
    args = tuple(args)
    arg_types = tuple(_ref_type(prior, r) for r in args)
    rebuilt = _rebuilt(block, arg_types)
    return KernelNode("customized", args, block_output_types(rebuilt), block=rebuilt)


_REBUILT: dict[tuple, BlockGraph | IRError] = {}
_REBUILT_MAX = 100_000


def _rebuilt(block: BlockGraph, arg_types: tuple[TensorType, ...]) -> BlockGraph:
    """``rebuild_block_graph``, memoised: the search and the checker re-derive the same block
    for the same operand types many times over (a result or an error, both deterministic)."""
    key = (block, arg_types)
    found = _REBUILT.get(key)
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


def _check_grid(grid, forloop_range) -> None:
    if len(grid) != GRID_AXES or any(int(g) < 1 for g in grid):
        raise IRError(Rule.BAD_MAP, f"grid {grid} must be three positive sizes")
    if int(forloop_range) < 1:
        raise IRError(Rule.BAD_MAP, f"forloop_range {forloop_range} must be positive")


def _check_axis_map(amap, rank: int, what: str) -> AxisMap:
    if amap is None or len(amap) != GRID_AXES:
        raise IRError(Rule.BAD_MAP, f"{what} must name a dim or None for each of 3 grid axes")
    dims = [None if d is None else int(d) for d in amap]
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
    _check_grid(grid, forloop_range)
    imap = _check_axis_map(imap, len(tensor.shape), "imap")
    if fmap is not None and not 0 <= int(fmap) < len(tensor.shape):
        raise IRError(Rule.BAD_MAP, f"fmap {fmap} names a dim outside rank {len(tensor.shape)}")
    fmap = None if fmap is None else int(fmap)
    t = tile_type(tensor, grid, forloop_range, imap, fmap)
    return BlockNode("input", (), t, source=source, imap=imap, fmap=fmap)


def _block_arg_types(prior, args) -> list[TensorType]:
    out = []
    for a in args:
        if not 0 <= a < len(prior):
            raise IRError(Rule.BAD_REFERENCE, f"operand {a} does not exist yet")
        if prior[a].op == "output":
            raise IRError(Rule.BAD_REFERENCE, f"operand {a} is a block output")
        out.append(prior[a].type)
    return out


def block_op(prior: tuple[BlockNode, ...], op: str, args, attrs=()) -> BlockNode:
    """A block-level op or accumulator over earlier block nodes ``prior``."""
    args = tuple(int(a) for a in args)
    attrs = attrs_of(attrs)
    if op in ("input", "output"):
        raise IRError(Rule.WRONG_LEVEL, f"use block_input/block_output for {op}")
    t = _apply_rule(op, Level.BLOCK, _block_arg_types(prior, args), dict(attrs))
    return BlockNode(op, args, t, attrs)


def block_output(prior: tuple[BlockNode, ...], arg: int, omap) -> BlockNode:
    (t,) = _block_arg_types(prior, (int(arg),))
    omap = _check_axis_map(omap, len(t.shape), "omap")
    return BlockNode("output", (int(arg),), t, omap=omap)


def output_type(node: BlockNode, grid) -> TensorType:
    """The device tensor a block output writes: its tile repeated along the omap'd dims."""
    shape = list(node.type.shape)
    for axis, dim in enumerate(node.omap):
        if dim is not None:
            shape[dim] *= grid[axis]
    return TensorType(tuple(shape), node.type.dtype)


def block_output_types(block: BlockGraph) -> tuple[TensorType, ...]:
    return tuple(output_type(block.nodes[i], block.grid) for i in block.output_ids)


def rebuild_block_graph(block: BlockGraph, operand_types: list[TensorType]) -> BlockGraph:
    """Re-derive every tile type of ``block`` for operands of ``operand_types``."""
    _check_grid(block.grid, block.forloop_range)
    grid = tuple(int(g) for g in block.grid)
    nodes: list[BlockNode] = []
    for i, n in enumerate(block.nodes):
        try:
            if n.op == "input":
                if n.source is None or not 0 <= n.source < len(operand_types):
                    raise IRError(Rule.BAD_REFERENCE, f"block input source {n.source} missing")
                new = block_input(
                    operand_types[n.source], n.source, grid, block.forloop_range, n.imap, n.fmap
                )
            elif n.op == "output":
                if len(n.args) != 1:
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
    return BlockGraph(grid, int(block.forloop_range), tuple(nodes))


def is_accumulator(op: str) -> bool:
    return op not in ("input", "output") and get(op).has(Prop.ACCUMULATOR)
