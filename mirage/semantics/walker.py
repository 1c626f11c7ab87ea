"""The one graph walker. What a value *is* comes from the semantics object it is given.

``evaluate(graph, inputs, semantics)`` walks a kernel graph in order. Pre-defined ops take their
meaning from the op records through ``semantics.apply``. A graph-defined op runs its block graph:

* concrete semantics (float, finite field) run all blocks of the grid at once — every value
  carries three leading grid axes — and every loop iteration: tiles come from imap/fmap, each
  accumulator sums its per-iteration contributions, the post-loop ops run once, and each output
  tile lands where its omap places it;
* symbolic semantics (abstract expressions) run the body once on whole-tensor terms and turn each
  accumulator into a ``sum`` over the loop range.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from mirage.errors import InputError
from mirage.ir import BlockGraph, BlockNode, KernelGraph, Ref
from mirage.ir.check import LOOP, loop_stages
from mirage.ir.graph import GRID_AXES
from mirage.ir.infer import is_accumulator
from mirage.ops import OpRecord, get


class Semantics(Protocol):
    """A meaning for values. ``concrete`` semantics hold data; symbolic ones hold terms."""

    concrete: bool

    def apply(self, rec: OpRecord, args: list, attrs: dict, shapes: list[tuple]) -> Any: ...

    def finish(self, rec: OpRecord, acc: Any, count: int) -> Any: ...

    # concrete semantics only
    def add(self, a: Any, b: Any) -> Any: ...

    def transform(self, value: Any, fn: Callable[[np.ndarray], np.ndarray]) -> Any:
        """Apply a pure layout change (reshape, transpose, slice, broadcast) to a value."""

    # symbolic semantics only
    def loop_total(self, count: int, value: Any) -> Any: ...


def evaluate(graph: KernelGraph, inputs: list, sem: Semantics, observe=None) -> list:
    """The values of ``graph``'s outputs for ``inputs`` (one per kernel input, in order).

    ``observe(where, value)``, if given, sees every intermediate value (symbolic semantics
    only), e.g. to check that no prefix of a graph would be pruned.
    """
    if len(inputs) != len(graph.input_ids):
        raise InputError(f"inputs: the graph takes {len(graph.input_ids)} inputs, got "
                         f"{len(inputs)}")
    values: dict[Ref, Any] = {}
    feed = iter(inputs)
    for i, node in enumerate(graph.nodes):
        if node.op == "input":
            values[Ref(i)] = next(feed)
            continue
        args = [values[r] for r in node.args]
        if node.op == "customized":
            watch = None if observe is None else (lambda j, v, i=i: observe(f"nodes[{i}].{j}", v))
            for k, v in enumerate(run_block(node.block, args, sem, watch)):
                values[Ref(i, k)] = v
        else:
            shapes = [graph.type_of(r).shape for r in node.args]
            values[Ref(i)] = sem.apply(get(node.op), args, node.attr, shapes)
            if observe is not None:
                observe(f"nodes[{i}]", values[Ref(i)])
    return [values[r] for r in graph.outputs]


def run_block(block: BlockGraph, operands: list, sem: Semantics, observe=None) -> list:
    if sem.concrete:
        return _run_block_concrete(block, operands, sem)
    return _run_block_symbolic(block, operands, sem, observe)


DIM_ATTRS = ("dim", "dim0", "dim1")


def _apply(sem: Semantics, block: BlockGraph, node: BlockNode, env: dict) -> Any:
    args = [env[a] for a in node.args]
    shapes = [block.nodes[a].type.shape for a in node.args]
    attrs = node.attr
    if sem.concrete:
        # Concrete values carry three leading grid axes: count dims from the end instead.
        rank = len(shapes[0])
        attrs = {k: (v - rank if k in DIM_ATTRS and v >= 0 else v) for k, v in attrs.items()}
    return sem.apply(get(node.op), args, attrs, shapes)


def _reduced_count(block: BlockGraph, node: BlockNode) -> int:
    """How many elements an accumulator folds per output element along the last dim."""
    return block.forloop_range * block.nodes[node.args[0]].type.shape[-1]


def input_index(block: BlockGraph, node: BlockNode, block_id, iteration: int) -> tuple:
    """The slice of the operand that block ``block_id`` sees in ``iteration`` (one block's view;
    ``tile_all_blocks`` + ``loop_slice`` compute the same for all blocks at once)."""
    index = []
    for dim, extent in enumerate(node.type.shape):
        start = 0
        stride = extent  # the size of this dim after the grid split
        if node.fmap == dim:
            start = iteration * extent
            stride = extent * block.forloop_range
        for axis, mapped in enumerate(node.imap):
            if mapped == dim:
                start += block_id[axis] * stride
        index.append(slice(start, start + extent))
    return tuple(index)


def output_index(node: BlockNode, block_id) -> tuple:
    """The slice of the output tensor that block ``block_id`` writes."""
    index = []
    for dim, extent in enumerate(node.type.shape):
        start = 0
        for axis, mapped in enumerate(node.omap):
            if mapped == dim:
                start = block_id[axis] * extent
        index.append(slice(start, start + extent))
    return tuple(index)


def tile_all_blocks(x: np.ndarray, node: BlockNode, grid) -> np.ndarray:
    """Every block's view of operand ``x`` (before the loop split): shape (gx, gy, gz, *tile).

    A grid axis that splits dim d splits it into (blocks, rest), blocks outermost; an axis that
    replicates the operand gets size 1 and broadcasts.
    """
    new_shape: list[int] = []
    position = {}
    for dim, size in enumerate(x.shape):
        axis = node.imap.index(dim) if dim in node.imap else None
        if axis is not None:
            position[axis] = len(new_shape)
            new_shape += [grid[axis], size // grid[axis]]
        else:
            new_shape.append(size)
    for axis in range(GRID_AXES):
        if axis not in position:
            position[axis] = len(new_shape)
            new_shape.append(1)
    x = x.reshape(new_shape)
    return np.moveaxis(x, [position[a] for a in range(GRID_AXES)], list(range(GRID_AXES)))


def loop_slice(node: BlockNode, iteration: int) -> tuple:
    """The index that takes iteration ``iteration``'s chunk of a tiled operand."""
    if node.fmap is None:
        return ()
    extent = node.type.shape[node.fmap]
    return (slice(None),) * (GRID_AXES + node.fmap) + (
        slice(iteration * extent, (iteration + 1) * extent),
    )


def place_all_blocks(y: np.ndarray, node: BlockNode, grid) -> np.ndarray:
    """Assemble every block's output tile (gx, gy, gz, *tile) into the output tensor."""
    tile = node.type.shape
    y = np.broadcast_to(y, (*grid, *tile))
    order: list[int] = []
    shape: list[int] = []
    for dim, extent in enumerate(tile):
        axis = node.omap.index(dim) if dim in node.omap else None
        if axis is not None:
            order.append(axis)
        order.append(GRID_AXES + dim)
        shape.append(extent * (grid[axis] if axis is not None else 1))
    unplaced = [a for a in range(GRID_AXES) if a not in order]
    if any(grid[a] > 1 for a in unplaced):
        raise InputError(f"omap {node.omap} leaves a grid axis of size > 1 unplaced")
    return y.transpose(order + unplaced).reshape(shape)


def _run_block_concrete(block: BlockGraph, operands: list, sem: Semantics) -> list:
    """All blocks at once: values carry three leading grid axes."""
    stages, errors = loop_stages(block)
    if errors:
        raise errors[0]
    tiled = {
        j: sem.transform(operands[n.source], lambda x, n=n: tile_all_blocks(x, n, block.grid))
        for j, n in enumerate(block.nodes)
        if n.op == "input"
    }
    env: dict[int, Any] = {}
    accs: dict[int, Any] = {}
    for it in range(block.forloop_range):
        for j, node in enumerate(block.nodes):
            if node.op == "input":
                index = loop_slice(node, it)
                env[j] = sem.transform(tiled[j], lambda x, index=index: x[index])
            elif is_accumulator(node.op):
                part = _apply(sem, block, node, env)
                accs[j] = part if it == 0 else sem.add(accs[j], part)
            elif stages[j] == LOOP:
                env[j] = _apply(sem, block, node, env)
    outputs = []
    for j, node in enumerate(block.nodes):
        if stages[j] == LOOP:
            continue
        if is_accumulator(node.op):
            env[j] = sem.finish(get(node.op), accs[j], _reduced_count(block, node))
        elif node.op == "output":
            tile = env[node.args[0]]
            outputs.append(
                sem.transform(tile, lambda y, node=node: place_all_blocks(y, node, block.grid))
            )
        else:
            env[j] = _apply(sem, block, node, env)
    return outputs


def _run_block_symbolic(block: BlockGraph, operands: list, sem: Semantics, observe=None) -> list:
    env: dict[int, Any] = {}
    outputs = []
    for j, node in enumerate(block.nodes):
        if node.op == "input":
            env[j] = operands[node.source]
        elif node.op == "output":
            outputs.append(env[node.args[0]])
            continue
        elif is_accumulator(node.op):
            part = _apply(sem, block, node, env)
            acc = sem.loop_total(block.forloop_range, part)
            env[j] = sem.finish(get(node.op), acc, _reduced_count(block, node))
        else:
            env[j] = _apply(sem, block, node, env)
        if observe is not None:
            observe(f"block.nodes[{j}]", env[j])
    return outputs
