"""The search space real programs need (issue 13, item 3): an elementwise-only program (numbers
and opaque functions included, any rank) is tiled into rows and tiles; a mean keeps its 1/n in
the abstract expression, so LayerNorm spelled with ``reduce_mean`` is pruned right and fuses into
one verified kernel, while the same body with a sum for the mean is pruned and refused; a
program with several outputs (fused add + RMSNorm, Q/K/V) fuses into one kernel writing all of
them in the program's order."""

from __future__ import annotations

import dataclasses

import pytest
from decoder_programs import fused_add_rmsnorm, layernorm, qkv_projection, softcap

import mirage as mi
from mirage.expr import is_subexpression, normalize
from mirage.ir import TARGETS, KernelGraph
from mirage.ops import REGISTRY, app, total, var
from mirage.ops.registry import scalar_attrs
from mirage.ops.terms import const
from mirage.search import SearchConfig, search
from mirage.search.kernel import Problem, initial_prefix, layouts_for
from mirage.semantics import ExprSemantics, run_block
from mirage.verify import abstract_outputs, verify

CONFIG = SearchConfig(max_kernel_ops=3, max_block_ops=4, num_workers=1, keep=2,
                      time_budget_s=120)


def _fused_and_verified(prog: KernelGraph) -> KernelGraph:
    result = search(prog, CONFIG, progress=False)
    lines = "\n".join(result.report.lines())
    assert result.searched, lines
    best = result.searched[0]
    assert best.customized_ids and len(best.customized_ids) == 1, "one fused kernel"
    for candidate in result.candidates:
        verdict = verify(prog, candidate)
        assert verdict, verdict.reason
    return best


def _body_ops(graph: KernelGraph) -> list[str]:
    (node,) = [n for n in graph.nodes if n.op == "customized"]
    return [n.op for n in node.block.nodes if n.op not in ("input", "output")]


@pytest.mark.parametrize("shape", [(8, 512), (4, 384), (2, 4, 320)])
def test_softcap_fuses_at_any_width_and_rank(shape):
    best = _fused_and_verified(softcap(shape))
    assert sorted(_body_ops(best)) == ["accum_sum", "div_scalar", "mul_scalar", "tanh"]


@pytest.mark.parametrize("shape", [(8, 512), (3, 320), (2, 3, 4, 96)])
def test_an_elementwise_only_program_gets_row_and_tile_layouts(shape):
    """No label is reduced: every output dim may be split into rows or tiles (not only one
    block per index, which overflows the grid for all but tiny tensors)."""
    prog = softcap(shape)
    problem = Problem.of(prog, TARGETS["h100"])
    layouts = layouts_for(problem, initial_prefix(problem), allow_split=True)
    assert layouts
    rank = len(shape)
    rows = [lay for lay in layouts if lay.imaps[0][0] == 0 and rank - 1 not in lay.imaps[0]]
    tiles = [lay for lay in layouts if rank - 1 in lay.imaps[0]
             and shape[-1] // lay.grid[lay.imaps[0].index(rank - 1)] > 1]
    assert rows and tiles
    assert all(lay.num_blocks <= 16 * TARGETS["h100"].num_sms for lay in layouts)


def test_elementwise_with_a_broadcast_operand_fuses():
    g = mi.new_kernel_graph()
    x, bias = g.new_input((8, 320), name="x"), g.new_input((1, 320), name="bias")
    g.mark_output(g.mul(g.tanh(g.add(x, bias)), 0.5))
    _fused_and_verified(g.kernel_graph())


@pytest.mark.parametrize("b,h", [(8, 256), (4, 384)])
def test_layernorm_with_reduce_mean_fuses_and_verifies(b, h):
    best = _fused_and_verified(layernorm(b, h))
    assert _body_ops(best) == ["reduce_mean", "sub", "rms_norm_eps", "accum_sum"]


def test_a_mean_keeps_its_one_over_n():
    x = var("in0")
    mean = REGISTRY["reduce_mean"].expr_fn([x], {"dim": -1}, [(4, 384)])
    assert mean == app("div", total(384, x), const(384, 1))
    summed = REGISTRY["reduce_sum"].expr_fn([x], {"dim": -1}, [(4, 384)])
    assert normalize(mean) != normalize(summed)
    # a div_scalar by n computes the mean too (the number is exact for any n)
    div_n = REGISTRY["div_scalar"].expr_fn([summed], scalar_attrs(384.0),
                                           [(4, 1)])
    assert normalize(div_n) == normalize(mean)


def test_a_sum_for_the_mean_is_pruned_and_refused_by_the_verifier():
    """The fused LayerNorm with its ``reduce_mean`` swapped for a ``reduce_sum``: pruning no
    longer lets it through (its expression is not a subexpression of the program's), and the
    verifier refuses it; the right body passes both."""
    prog = layernorm(4, 384)
    right = _fused_and_verified(prog)
    (k,) = right.customized_ids
    node = right.nodes[k]
    nodes = tuple(dataclasses.replace(n, op="reduce_sum") if n.op == "reduce_mean" else n
                  for n in node.block.nodes)
    wrong_block = dataclasses.replace(node.block, nodes=nodes)
    wrong = KernelGraph(tuple(dataclasses.replace(n, block=wrong_block) if i == k else n
                              for i, n in enumerate(right.nodes)), right.outputs)
    (target,) = [normalize(t) for t in abstract_outputs(prog)]
    inputs = [var("in0")]
    for graph, ok in ((right, True), (wrong, False)):
        block = graph.nodes[k].block
        values = []
        run_block(block, inputs, ExprSemantics(),
                  lambda where, value, values=values: values.append(normalize(value)))
        assert all(is_subexpression(v, target) for v in values) is ok
        assert (normalize(abstract_outputs(graph)[0]) == target) is ok
    assert verify(prog, right)
    verdict = verify(prog, wrong)
    assert not verdict and verdict.status != "equivalent"


@pytest.mark.parametrize("b,h,norm_first", [(8, 256, False), (4, 320, False), (8, 256, True)])
def test_several_outputs_fuse_into_one_kernel_in_program_order(b, h, norm_first):
    prog = fused_add_rmsnorm(b, h, norm_first)
    best = _fused_and_verified(prog)
    assert sorted(_body_ops(best)) == ["accum_sum", "accum_sum", "add", "rms_norm_eps"]
    assert [t.shape for t in best.output_types] == [t.shape for t in prog.output_types]


@pytest.mark.parametrize("b,h,nq,nkv", [(8, 128, 128, 32), (4, 96, 96, 48)])
def test_qkv_projections_fuse_into_one_kernel(b, h, nq, nkv):
    prog = qkv_projection(b, h, nq, nkv)
    result = search(prog, dataclasses.replace(CONFIG, max_block_ops=6), progress=False)
    assert result.searched, "\n".join(result.report.lines())
    best = result.searched[0]
    assert len(best.customized_ids) == 1
    assert sorted(_body_ops(best)) == ["accum_sum"] * 3 + ["matmul"] * 3
    assert [t.shape for t in best.output_types] == [(b, nq), (b, nkv), (b, nkv)]
    for candidate in result.candidates:
        assert verify(prog, candidate)
