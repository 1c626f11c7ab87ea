"""The validity checker: a table of named rules, each rejection naming the rule it broke.

``check`` re-derives every node's type through ``mirage.ir.infer`` (so stored types cannot lie)
and then applies the whole-graph rules of a block graph: the omap covers every grid axis, each
input-to-output path has exactly one accumulator, and the tiles fit the target's shared memory.
"""

from __future__ import annotations

import functools

from mirage.ir import infer
from mirage.ir.graph import DTYPE_BYTES, BlockGraph, KernelGraph, KernelNode, Ref, TensorType
from mirage.ir.infer import IRError, Rule
from mirage.ir.target import Target, resolve_target
from mirage.ops import Prop, get

LOOP, POST = "loop", "post"
ACCUMULATOR_BYTES = 4  # accumulators are fp32 whatever the tensor dtype


def omap_coverage(block: BlockGraph) -> list[IRError]:
    errors = []
    for i in block.output_ids:
        omap = block.nodes[i].omap
        for axis, size in enumerate(block.grid):
            if size > 1 and omap[axis] is None:
                errors.append(
                    IRError(
                        Rule.OMAP_COVERAGE,
                        f"grid axis {axis} has {size} blocks but omap {omap} does not place "
                        "them: they would write the same tile",
                        f"block.nodes[{i}]",
                    )
                )
    return errors


def loop_stages(block: BlockGraph) -> tuple[list[str], list[IRError]]:
    """Classify nodes as in-loop or post-loop; report paths with zero or two accumulators."""
    stages: list[str] = []
    errors = []
    for i, n in enumerate(block.nodes):
        arg_stages = {stages[a] for a in n.args}
        where = f"block.nodes[{i}]"
        if n.op == "input":
            stages.append(LOOP)
        elif infer.is_accumulator(n.op):
            if arg_stages != {LOOP}:
                errors.append(IRError(Rule.ACCUMULATOR_PATH, "accumulates a post-loop value "
                                      "(a path through two accumulators)", where))
            stages.append(POST)
        elif n.op == "output":
            if arg_stages != {POST}:
                errors.append(IRError(Rule.ACCUMULATOR_PATH, "writes an in-loop value (a path "
                                      "without an accumulator)", where))
            stages.append(POST)
        else:
            if len(arg_stages) > 1:
                errors.append(IRError(Rule.ACCUMULATOR_PATH, f"{n.op} mixes in-loop and "
                                      "post-loop operands (a path without an accumulator)",
                                      where))
            stages.append(arg_stages.pop() if arg_stages else LOOP)
    return stages, errors


DOT_MIN = 16  # tl.dot needs M, N, K >= 16: smaller operand dims are padded (codegen.layout)


def _padded_numel(shape: tuple[int, ...], dot: bool) -> int:
    """Elements of a tile as generated code holds it: every dim padded to a power of two, the
    last two to at least ``DOT_MIN`` for a ``tl.dot`` operand."""
    total = 1
    for d, e in enumerate(shape):
        e = 1 << max(0, (e - 1).bit_length())
        if dot and d >= len(shape) - 2:
            e = max(e, DOT_MIN)
        total *= e
    return total


def shared_memory_bytes(block: BlockGraph) -> int:
    """Estimated shared memory of one block, one copy of every tile (the generated kernel's
    pipelining holds more copies where they fit, see ``runtime.tuning``).

    Counts input tiles, results of non-elementwise ops (matmul, reductions) and accumulators
    (fp32), at the padded extents the generated code uses: a tile that reaches a ``tl.dot``
    (directly or through elementwise ops and views) is padded to 16 per side (a 2-row tile of
    X fed to a matmul occupies 16 rows). Chains of elementwise ops are fused into registers by
    the thread-graph rules and views cost nothing, so neither is counted.
    """
    feeds_dot = {a for n in block.nodes if n.op == "matmul" for a in n.args}
    for j in reversed(range(len(block.nodes))):
        n = block.nodes[j]
        rec = None if n.op in ("input", "output") else get(n.op)
        if j in feeds_dot and rec is not None and (rec.has(Prop.ELEMENTWISE)
                                                   or rec.has(Prop.VIEW)):
            feeds_dot.update(n.args)
    total = 0
    for j, n in enumerate(block.nodes):
        if n.op == "output":
            continue
        size = _padded_numel(n.type.shape, j in feeds_dot) * n.type.nbytes // n.type.numel
        if infer.is_accumulator(n.op):
            total += size // DTYPE_BYTES[n.type.dtype] * ACCUMULATOR_BYTES
        elif n.op == "input":
            total += size
        else:
            rec = get(n.op)
            if not rec.has(Prop.ELEMENTWISE) and not rec.has(Prop.VIEW):
                total += size
    return total


def block_rules(block: BlockGraph, target: Target) -> list[IRError]:
    errors = omap_coverage(block)
    errors += loop_stages(block)[1]
    used = shared_memory_bytes(block)
    if used > target.smem_per_block:
        errors.append(IRError(Rule.SHARED_MEMORY, f"{used} bytes per block > {target.name}'s "
                              f"{target.smem_per_block}", "block"))
    return errors


@functools.lru_cache(maxsize=50_000)
def _block_rules_memo(block: BlockGraph, target: Target) -> tuple[IRError, ...]:
    """``block_rules``, memoised: the search checks the same block in many candidates."""
    return tuple(block_rules(block, target))


def _rederive(prior: tuple[KernelNode, ...], node: KernelNode) -> KernelNode:
    if node.op == "input":
        if node.args:
            raise IRError(Rule.WRONG_ARITY, "a kernel input takes no operands")
        if not isinstance(node.outputs, tuple) or len(node.outputs) != 1 or not isinstance(
                node.outputs[0], TensorType):
            raise IRError(Rule.BAD_TYPE, "a kernel input has exactly one type")
        return infer.kernel_input(node.outputs[0].shape, node.outputs[0].dtype, node.name)
    if node.op == "customized":
        if node.block is None:
            raise IRError(Rule.BAD_ATTRIBUTE, "customized op without a block graph")
        return infer.customized_op(prior, node.args, node.block)
    if node.block is not None:
        raise IRError(Rule.BAD_ATTRIBUTE, f"{node.op} cannot carry a block graph")
    return infer.kernel_op(prior, node.op, node.args, node.attrs)


def check(graph: KernelGraph, target: Target | None = None) -> list[IRError]:
    """Every rule the graph breaks (empty when valid), for ``target`` (default:
    ``default_target()``, resolved at each call)."""
    target = resolve_target(target)
    errors: list[IRError] = []
    derived: list[KernelNode] = []
    for i, node in enumerate(graph.nodes):
        where = f"nodes[{i}]"
        try:
            if not isinstance(node, KernelNode):
                raise IRError(Rule.BAD_TYPE, f"expected a KernelNode, got {node!r:.40}")
            new = _rederive(tuple(derived), node)
        except IRError as e:
            errors.append(e.at(where))
            return errors  # later nodes depend on this one: stop at the first broken node
        if new.outputs != node.outputs:
            errors.append(IRError(Rule.TYPE_DISAGREES, f"stored {[str(t) for t in node.outputs]}"
                                  f" vs derived {[str(t) for t in new.outputs]}", where))
        elif new.block != node.block:
            errors.append(IRError(Rule.TYPE_DISAGREES, "stored tile types disagree with the "
                                  "ones derived from the grid, loop range and maps", where))
        if new.block is not None:
            errors += [e.at(where) for e in _block_rules_memo(new.block, target)]
        derived.append(new)
    duplicate = infer.duplicate_input_name(graph.nodes)
    if duplicate is not None:
        errors.append(IRError(Rule.BAD_NAME, f"two inputs are named {duplicate!r}", "nodes"))
    if not graph.outputs:
        errors.append(IRError(Rule.BAD_OUTPUTS, "the graph has no outputs", "outputs"))
    for k, ref in enumerate(graph.outputs):
        if not isinstance(ref, Ref) or any(isinstance(v, bool) or not isinstance(v, int)
                                           for v in (ref.node, ref.index)):
            errors.append(IRError(Rule.BAD_OUTPUTS, f"output {ref!r:.40} is not a Ref of two "
                                  "ints", f"outputs[{k}]"))
        elif not 0 <= ref.node < len(graph.nodes) or not (
            0 <= ref.index < len(graph.nodes[ref.node].outputs)
        ):
            errors.append(IRError(Rule.BAD_OUTPUTS, f"output {ref} does not exist",
                                  f"outputs[{k}]"))
    return errors


def validate(graph: KernelGraph, target: Target | None = None) -> KernelGraph:
    """Return ``graph`` if valid, else raise the first ``IRError``."""
    errors = check(graph, target)
    if errors:
        raise errors[0]
    return graph
