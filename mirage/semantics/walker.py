"""The one graph walker. What a value *is* comes from the semantics object it is given.

``evaluate(graph, inputs, semantics)`` walks a kernel graph in order. Pre-defined ops take their
meaning from the op records through ``semantics.apply``. A graph-defined op runs its block graph:

* concrete semantics (float, finite field) run every block of the grid and every loop iteration,
  slicing tiles by imap/fmap, summing accumulator contributions over iterations, running the
  post-loop ops once and writing each output tile where its omap places it;
* symbolic semantics (abstract expressions) run the body once on whole-tensor terms and turn each
  accumulator into a ``sum`` over the loop range.
"""

from __future__ import annotations

import itertools
from typing import Any, Protocol

from mirage.ir import BlockGraph, BlockNode, KernelGraph, Ref, TensorType
from mirage.ir.check import LOOP, loop_stages
from mirage.ir.infer import block_output_types, is_accumulator
from mirage.ops import OpRecord, get


class Semantics(Protocol):
    """A meaning for values. ``concrete`` semantics hold data; symbolic ones hold terms."""

    concrete: bool

    def apply(self, rec: OpRecord, args: list, attrs: dict, shapes: list[tuple]) -> Any: ...

    def finish(self, rec: OpRecord, acc: Any, count: int) -> Any: ...

    # concrete semantics only
    def slice(self, value: Any, index: tuple[slice, ...]) -> Any: ...

    def add(self, a: Any, b: Any) -> Any: ...

    def new_output(self, t: TensorType) -> Any: ...

    def write(self, out: Any, index: tuple[slice, ...], tile: Any) -> None: ...

    def seal(self, out: Any) -> Any: ...

    # symbolic semantics only
    def loop_total(self, count: int, value: Any) -> Any: ...


def evaluate(graph: KernelGraph, inputs: list, sem: Semantics) -> list:
    """The values of ``graph``'s outputs for ``inputs`` (one per kernel input, in order)."""
    if len(inputs) != len(graph.input_ids):
        raise ValueError(f"graph takes {len(graph.input_ids)} inputs, got {len(inputs)}")
    values: dict[Ref, Any] = {}
    feed = iter(inputs)
    for i, node in enumerate(graph.nodes):
        if node.op == "input":
            values[Ref(i)] = next(feed)
            continue
        args = [values[r] for r in node.args]
        if node.op == "customized":
            for k, v in enumerate(run_block(node.block, args, sem)):
                values[Ref(i, k)] = v
        else:
            shapes = [graph.type_of(r).shape for r in node.args]
            values[Ref(i)] = sem.apply(get(node.op), args, node.attr, shapes)
    return [values[r] for r in graph.outputs]


def run_block(block: BlockGraph, operands: list, sem: Semantics) -> list:
    if sem.concrete:
        return _run_block_concrete(block, operands, sem)
    return _run_block_symbolic(block, operands, sem)


def _apply(sem: Semantics, block: BlockGraph, node: BlockNode, env: dict) -> Any:
    args = [env[a] for a in node.args]
    shapes = [block.nodes[a].type.shape for a in node.args]
    return sem.apply(get(node.op), args, node.attr, shapes)


def _reduced_count(block: BlockGraph, node: BlockNode) -> int:
    """How many elements an accumulator folds per output element along the last dim."""
    return block.forloop_range * block.nodes[node.args[0]].type.shape[-1]


def input_index(block: BlockGraph, node: BlockNode, block_id, iteration: int):
    """The slice of the operand that block ``block_id`` sees in ``iteration``."""
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


def output_index(node: BlockNode, block_id):
    """The slice of the output tensor that block ``block_id`` writes."""
    index = []
    for dim, extent in enumerate(node.type.shape):
        start = 0
        for axis, mapped in enumerate(node.omap):
            if mapped == dim:
                start = block_id[axis] * extent
        index.append(slice(start, start + extent))
    return tuple(index)


def _run_block_concrete(block: BlockGraph, operands: list, sem: Semantics) -> list:
    stages, errors = loop_stages(block)
    if errors:
        raise errors[0]
    out_ids = block.output_ids
    outputs = [sem.new_output(t) for t in block_output_types(block)]
    for block_id in itertools.product(*(range(g) for g in block.grid)):
        env: dict[int, Any] = {}
        accs: dict[int, Any] = {}
        for it in range(block.forloop_range):
            for j, node in enumerate(block.nodes):
                if node.op == "input":
                    index = input_index(block, node, block_id, it)
                    env[j] = sem.slice(operands[node.source], index)
                elif is_accumulator(node.op):
                    part = _apply(sem, block, node, env)
                    accs[j] = part if it == 0 else sem.add(accs[j], part)
                elif stages[j] == LOOP:
                    env[j] = _apply(sem, block, node, env)
        for j, node in enumerate(block.nodes):
            if stages[j] == LOOP:
                continue
            if is_accumulator(node.op):
                env[j] = sem.finish(get(node.op), accs[j], _reduced_count(block, node))
            elif node.op == "output":
                k = out_ids.index(j)
                sem.write(outputs[k], output_index(node, block_id), env[node.args[0]])
            else:
                env[j] = _apply(sem, block, node, env)
    return [sem.seal(out) for out in outputs]


def _run_block_symbolic(block: BlockGraph, operands: list, sem: Semantics) -> list:
    env: dict[int, Any] = {}
    outputs = []
    for j, node in enumerate(block.nodes):
        if node.op == "input":
            env[j] = operands[node.source]
        elif node.op == "output":
            outputs.append(env[node.args[0]])
        elif is_accumulator(node.op):
            part = _apply(sem, block, node, env)
            acc = sem.loop_total(block.forloop_range, part)
            env[j] = sem.finish(get(node.op), acc, _reduced_count(block, node))
        else:
            env[j] = _apply(sem, block, node, env)
    return outputs
