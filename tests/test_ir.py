"""IR: frozen graphs, structural hash, and the validity rules (each rejection names its rule)."""

import dataclasses

import pytest
from planted import RMS, replace_block, replace_block_node

import mirage as mi
from mirage.ir import A100, H100, IRError, KernelGraph, Rule, check, shared_memory_bytes
from mirage.workloads import REFERENCES, WORKLOADS, program, reference

N = None


def _rms_graph(x_shape=(4, 64), w_shape=(64, 64), grid=4, loop=4, x_imap=(N, N, N),
               w_imap=(1, N, N), omap=(1, N, N), acc="sum", x_fmap=1):
    g = mi.new_kernel_graph()
    x = g.new_input(x_shape)
    w = g.new_input(w_shape)
    tb = mi.new_threadblock_graph((grid, 1, 1), loop)
    tx = tb.new_input(x, x_imap, x_fmap)
    tw = tb.new_input(w, w_imap, 0)
    m = tb.matmul(tx, tw)
    out = tb.forloop_accum(m, acc) if acc else m
    tb.new_output(out, omap)
    (o,) = g.customized([x, w], tb)
    g.mark_output(o)
    return g.kernel_graph()


def _rule_of(fn) -> Rule:
    with pytest.raises(IRError) as info:
        fn()
    return info.value.rule


def test_a_valid_graph_passes():
    assert check(_rms_graph()) == []


def test_shape_mismatch():
    g = mi.new_kernel_graph()
    a, b = g.new_input((4, 8)), g.new_input((9, 4))
    assert _rule_of(lambda: g.matmul(a, b)) is Rule.SHAPE_MISMATCH


def test_dtype_mismatch():
    g = mi.new_kernel_graph()
    a, b = g.new_input((4, 8)), g.new_input((4, 8), mi.float32)
    assert _rule_of(lambda: g.add(a, b)) is Rule.DTYPE_MISMATCH


def test_uneven_split_by_grid_and_by_loop():
    assert _rule_of(lambda: _rms_graph(grid=3)) is Rule.UNEVEN_SPLIT
    assert _rule_of(lambda: _rms_graph(loop=3)) is Rule.UNEVEN_SPLIT


def test_bad_map():
    assert _rule_of(lambda: _rms_graph(w_imap=(1, 1, N))) is Rule.BAD_MAP
    assert _rule_of(lambda: _rms_graph(w_imap=(5, N, N))) is Rule.BAD_MAP


def test_omap_not_covering_a_grid_axis():
    assert _rule_of(lambda: _rms_graph(omap=(N, N, N))) is Rule.OMAP_COVERAGE


def test_path_without_accumulator():
    assert _rule_of(lambda: _rms_graph(acc=None)) is Rule.ACCUMULATOR_PATH


def test_path_with_two_accumulators():
    g = mi.new_kernel_graph()
    x = g.new_input((4, 64))
    tb = mi.new_threadblock_graph((1, 1, 1), 4)
    t = tb.forloop_accum(tb.forloop_accum(tb.new_input(x, (N, N, N), 1)))
    tb.new_output(t, (N, N, N))
    g.customized([x], tb)
    assert _rule_of(g.kernel_graph) is Rule.ACCUMULATOR_PATH


def test_post_loop_op_mixing_loop_values():
    g = mi.new_kernel_graph()
    x = g.new_input((4, 64))
    tb = mi.new_threadblock_graph((1, 1, 1), 4)
    t = tb.new_input(x, (N, N, N), 1)
    mixed = tb.add(tb.forloop_accum(t), t)
    tb.new_output(mixed, (N, N, N))
    g.customized([x], tb)
    assert _rule_of(g.kernel_graph) is Rule.ACCUMULATOR_PATH


def test_shared_memory_limit_is_per_target():
    g = mi.new_kernel_graph(target=H100)
    x, w = g.new_input((64, 1024)), g.new_input((1024, 32))
    tb = mi.new_threadblock_graph((1, 1, 1), 1)
    m = tb.matmul(tb.new_input(x, (N, N, N), N), tb.new_input(w, (N, N, N), N))
    tb.new_output(tb.forloop_accum(m), (N, N, N))
    (o,) = g.customized([x, w], tb)
    g.mark_output(o)
    fits_h100 = g.kernel_graph()  # 128 + 64 + 4 KB tiles + 8 KB fp32 accumulator
    assert A100.smem_per_block < shared_memory_bytes(fits_h100.nodes[2].block) <= (
        H100.smem_per_block
    )
    assert check(fits_h100, H100) == []
    assert [e.rule for e in check(fits_h100, A100)] == [Rule.SHARED_MEMORY]


def test_unknown_op_and_wrong_level():
    g = mi.new_kernel_graph()
    x = g.new_input((4, 4))
    assert _rule_of(lambda: g._op("frobnicate", (x,))) is Rule.UNKNOWN_OP
    assert _rule_of(lambda: g._op("accum_sum", (x,))) is Rule.WRONG_LEVEL


def test_stored_type_that_disagrees_is_caught():
    good = _rms_graph()
    bad = replace_block_node(good, 2, 0, fmap=0)  # X split by the loop along the wrong dim
    assert check(bad)[0].rule is Rule.SHAPE_MISMATCH
    shrunk = replace_block(good, 2, forloop_range=2)
    assert check(shrunk)[0].rule is Rule.TYPE_DISAGREES


def test_errors_locate_the_node():
    shrunk = replace_block(REFERENCES["rmsnorm"](RMS, tile_n=16, tile_k=16), 2, forloop_range=3)
    err = check(shrunk)[0]
    assert err.where.startswith("nodes[2]")


def test_graphs_are_frozen_and_hash_structurally():
    a, b = reference("rmsnorm", 1), reference("rmsnorm", 1)
    assert a == b and hash(a) == hash(b) and a.digest == b.digest
    assert a.digest != reference("rmsnorm", 8).digest
    assert a.digest != program("rmsnorm", 1).digest
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.nodes = ()


@pytest.mark.parametrize("case", WORKLOADS)
@pytest.mark.parametrize("b", (1, 16))
def test_references_are_valid_on_both_targets(case, b):
    g = reference(case, b)
    assert check(g, A100) == [] and check(g, H100) == []
    assert isinstance(g, KernelGraph) and g.customized_ids
