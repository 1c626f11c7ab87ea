"""Hostile inputs to the verifier: it certifies only what its bound certifies, refuses work it
cannot afford, and never lets anything but a verdict or an ``InputError`` out."""

from __future__ import annotations

import time

import numpy as np
import pytest

import mirage as mi
from mirage.errors import InputError
from mirage.ir import KernelGraph, KernelNode, Ref, TensorType
from mirage.ir.serialize import dumps, loads
from mirage.verify import CANNOT_CERTIFY, EQUIVALENT, NOT_EQUIVALENT, Verdict, VerifyConfig, verify

N = None


def chain(n: int, ops=("square",), dims=(4, 8)) -> KernelGraph:
    """``n`` ops applied in turn to one input; binary ops take the input as second operand."""
    g = mi.new_kernel_graph()
    x = g.new_input(dims=dims, name="x")
    y = x
    for k in range(n):
        op = ops[k % len(ops)]
        y = getattr(g, op)(y, x) if op in ("add", "sub", "mul", "div") else getattr(g, op)(y)
    g.mark_output(y)
    return g.kernel_graph()


# --- the bound ---------------------------------------------------------------------------------


def test_twenty_squares_cannot_be_certified():
    g = chain(20)
    v = verify(g, g)
    assert v.status == CANNOT_CERTIFY and not v
    assert v.reason.startswith("cannot certify:")
    assert "D=2097152" in v.reason and "q=1048571" in v.reason


def test_thirty_squares_finish_quickly():
    g = chain(30)
    start = time.monotonic()
    v = verify(g, g)
    assert time.monotonic() - start < 5
    assert v.status == CANNOT_CERTIFY and "degree bound" in v.reason


@pytest.mark.parametrize("n", [1, 5, 10])
def test_short_square_chains_are_certified_below_1e9(n):
    g = chain(n)
    v = verify(g, g)
    assert v.status == EQUIVALENT and v
    assert v.bound <= 1e-9 and v.trials >= 3


def test_more_trials_are_taken_to_reach_the_bound():
    # 2**15 = 32768: eps ~ 0.0625, so 3 trials are not enough for 1e-9 but 32 are
    g = chain(14)
    v = verify(g, g)
    assert v.status == EQUIVALENT and v.trials > 3 and v.bound <= 1e-9


def test_bound_unreachable_within_max_trials_is_refused():
    g = chain(14)
    v = verify(g, g, VerifyConfig(max_trials=3))
    assert v.status == CANNOT_CERTIFY and "max_trials" not in v.reason
    assert "after 3 trials" in v.reason and "> 1e-09" in v.reason


def test_a_wrong_high_degree_candidate_is_still_rejected():
    v = verify(chain(20), chain(21))
    assert v.status == NOT_EQUIVALENT and v.reason.startswith("finite-field trial")


def test_stricter_certify_bound_is_honoured():
    g = chain(3)
    v = verify(g, g, VerifyConfig(certify_bound=1e-300, max_trials=3))
    assert v.status == CANNOT_CERTIFY and "cannot certify" in v.reason


# --- deep chains -------------------------------------------------------------------------------


@pytest.mark.parametrize("ops, status", [
    (("add",), EQUIVALENT),
    (("exp", "square"), CANNOT_CERTIFY),  # exp of exp: outside LAX
    (("square", "add"), CANNOT_CERTIFY),  # degree 2**150
    (("sub", "mul"), EQUIVALENT),  # degree grows by one per mul: eps stays small
])
@pytest.mark.parametrize("n", [300, 1000])
def test_deep_chains_verify_or_refuse(n, ops, status):
    g = chain(n, ops)
    again = loads(dumps([g], g)).graphs[0]
    assert again == g
    v = verify(g, again)
    assert v.status == status, v.reason


def test_deep_transpose_chain():
    g = mi.new_kernel_graph()
    y = x = g.new_input(dims=(8, 8), name="x")
    for _ in range(1000):
        y = g.transpose(y)
    g.mark_output(g.add(y, x))
    prog = g.kernel_graph()
    assert verify(prog, prog).status == EQUIVALENT


# --- resources ---------------------------------------------------------------------------------


def test_huge_dims_are_refused_before_allocating():
    g = chain(2, ("exp",), dims=(2**20, 2**20))
    v = verify(g, g)
    assert v.status == CANNOT_CERTIFY
    assert v.reason.startswith("cannot verify:") and "elements exceed max_elements" in v.reason


def test_huge_dims_from_a_small_file_are_refused():
    text = ('{"format": "mirage-mugraph", "version": 1, "graphs": [{"nodes": ['
            '{"op": "input", "name": "X", "shape": [1048576, 1048576], "dtype": "fp16"},'
            '{"op": "exp", "args": [[0, 0]]}], "outputs": [[1, 0]]}]}')
    assert len(text) < 1024
    (g,) = loads(text).graphs
    v = verify(g, g)
    assert v.status == CANNOT_CERTIFY and "elements exceed" in v.reason


def test_max_elements_is_configurable():
    g = chain(1, dims=(64, 64))
    assert verify(g, g, VerifyConfig(max_elements=1000)).status == CANNOT_CERTIFY
    assert verify(g, g, VerifyConfig(max_elements=10**6)).status == EQUIVALENT


def test_time_limit_stops_verification():
    g = chain(3, dims=(256, 256))
    v = verify(g, g, VerifyConfig(time_limit_s=1e-9))
    assert v.status == CANNOT_CERTIFY and v.reason.startswith("cannot certify: time limit")


# --- odd arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize("field, value", [
    ("max_trials", 0), ("max_trials", 2.5), ("min_trials", True), ("seed", -1),
    ("time_limit_s", float("nan")), ("time_limit_s", 0), ("certify_bound", float("inf")),
    ("max_elements", "lots"), ("float_dtype", "float16"),
])
def test_bad_config_values_are_refused(field, value):
    with pytest.raises(InputError, match=f"VerifyConfig.{field}"):
        VerifyConfig(**{field: value})


def test_min_trials_above_max_is_refused():
    with pytest.raises(InputError, match="min_trials"):
        VerifyConfig(min_trials=5, max_trials=4)


@pytest.mark.parametrize("program", [None, "graph", 3])
def test_non_graph_arguments_are_refused(program):
    g = chain(1)
    with pytest.raises(InputError, match="program must be a KernelGraph"):
        verify(program, g)


def test_config_of_the_wrong_type_is_refused():
    g = chain(1)
    with pytest.raises(InputError, match="config must be a VerifyConfig"):
        verify(g, g, {"seed": 1})


def test_invalid_hand_made_program_is_refused_not_crashed():
    g = chain(1)
    bad = KernelGraph((KernelNode("input", (), (TensorType((4, 8.5)),), name="x"),
                       KernelNode("exp", (Ref(0),), (TensorType((4, 8)),))), (Ref(1),))
    v = verify(bad, g)
    assert v.status == CANNOT_CERTIFY and "invalid program" in v.reason
    assert "expected an int, got float 8.5" in v.reason
    v = verify(g, bad)
    assert v.status == NOT_EQUIVALENT and "invalid candidate" in v.reason


def test_numpy_integer_dims_are_accepted():
    g = mi.new_kernel_graph()
    x = g.new_input(dims=(np.int64(4), np.int32(8)), name="x")
    g.mark_output(g.exp(x))
    prog = g.kernel_graph()
    assert prog.input_types[0].shape == (4, 8)
    assert type(prog.input_types[0].shape[0]) is int
    assert verify(prog, prog).status == EQUIVALENT


def test_overflowing_program_is_not_called_inequivalent_to_itself():
    g = mi.new_kernel_graph()
    y = g.new_input(dims=(4, 8), name="x")
    for _ in range(1100):
        y = g.add(y, y)  # 2**1100 * x overflows float64
    g.mark_output(y)
    prog = g.kernel_graph()
    v = verify(prog, prog)
    assert v.status == CANNOT_CERTIFY and "not finite" in v.reason


def test_verdict_status_field():
    assert Verdict(True, "ok").status == EQUIVALENT
    assert Verdict(False, "output 0 differs").status == NOT_EQUIVALENT
    assert Verdict(False, "cannot certify: x").status == CANNOT_CERTIFY
    with pytest.raises(InputError, match="Verdict.status"):
        Verdict(True, "ok", status=NOT_EQUIVALENT)


def _deep_block(n: int) -> KernelGraph:
    g = mi.new_kernel_graph()
    a = g.new_input(dims=(4, 16), dtype="fp32", name="a")
    tb = mi.new_threadblock_graph((2, 1, 1), 1)
    t = y = tb.new_input(a, (0, N, N), N)
    for k in range(n):
        y = tb.add(y, t) if k % 2 else tb.mul(y, t)
    tb.new_output(tb.forloop_accum(y), (0, N, N))
    (o,) = g.customized([a], tb)
    g.mark_output(o)
    return g.kernel_graph()


@pytest.mark.parametrize("n", [300, 1000])
def test_deep_block_graphs_verify(n):
    g = _deep_block(n)
    v = verify(g, loads(dumps([g])).graphs[0])
    assert v.status == EQUIVALENT and v.bound <= 1e-9


def test_an_equivalent_verdict_states_its_bound():
    g = chain(2)
    v = verify(g, g)
    assert f"false-pass bound {v.bound:.1e}" in v.reason


def test_verify_resolves_its_default_target_at_call_time(monkeypatch):
    from pathlib import Path

    from mirage.ir import load

    doc = load(Path(__file__).resolve().parents[2] / "saved_mugraphs" / "qknorm_b1.json",
               mi.ir.H100)
    too_big_for_a100 = doc.graphs[3]
    monkeypatch.setenv("MIRAGE_TARGET", "a100")
    v = verify(doc.program, too_big_for_a100, VerifyConfig(max_trials=3, float_check=False))
    assert v.status == NOT_EQUIVALENT and "shared-memory limit" in v.reason and "a100" in v.reason
