"""The decoder-layer ops (issue 13, scope 2): numbers as operands and rms_norm with eps; tanh,
sigmoid and exact (erf) GELU; reduce_max and the numerically stable softmax.

Each op is checked in every meaning and at every level: the float meaning against torch, the
finite-field meaning (a correct µGraph verifies, a wrong one is rejected), the kernel level (the
runtime calls the row's torch_fn), block graphs in Triton's CPU interpreter and ahead of time for
sm_90, and a small search that finds a fused, verified candidate holding the op.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

import mirage as mi
from mirage.codegen import generate
from mirage.codegen.load import aot_compile, import_source, write_source
from mirage.errors import InputError
from mirage.ops import REGISTRY, Prop, get
from mirage.ops.field import Field
from mirage.ops.registry import scalar_attrs, scalar_ratio, scalar_value
from mirage.runtime import compile as compile_graph
from mirage.search import SearchConfig, search
from mirage.semantics.meanings import FloatSemantics
from mirage.semantics.walker import evaluate
from mirage.verify import verify

N = None
TORCH = {"fp16": torch.float16, "fp32": torch.float32}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MIRAGE_CACHE_DIR", str(tmp_path / "cache"))


def program(build, shapes, dtype=mi.float16):
    g = mi.new_kernel_graph()
    xs = [g.new_input(s, dtype) for s in shapes]
    g.mark_output(build(g, *xs))
    return g.kernel_graph()


def fused(build, shapes, grid, dtype=mi.float16, maps=None):
    """One graph-defined kernel: one block per ``grid[0]`` rows, whole rows, no loop; inputs of
    one row (a gain) are replicated."""
    g = mi.new_kernel_graph()
    xs = [g.new_input(s, dtype) for s in shapes]
    tb = mi.new_threadblock_graph((grid, 1, 1), 1)
    tiles = [tb.new_input(x, (0 if x.shape[0] > 1 else N, N, N), N) for x in xs]
    tb.new_output(tb.forloop_accum(build(tb, *tiles)), (0, N, N))
    (out,) = g.customized(xs, tb)
    g.mark_output(out)
    return g.kernel_graph()


def _inputs(graph, seed=0, scale=1.0, dtype="fp32"):
    rng = np.random.default_rng(seed)
    xs = [scale * rng.standard_normal(t.shape).astype(np.float32) for t in graph.input_types]
    return [torch.from_numpy(x).to(TORCH[dtype]).float().numpy() for x in xs]


def run_interpreter(graph, xs, dtype):
    fn = compile_graph(graph, mode="interpret")
    (ref,) = evaluate(graph, xs, FloatSemantics(np.float32))
    out = torch.full(ref.shape, float("nan"), dtype=TORCH[dtype])
    with np.errstate(all="ignore"):
        fn(*[torch.from_numpy(x).to(TORCH[dtype]) for x in xs], out=[out])
    return out.float().numpy(), ref


def _stable_softmax(g, x):
    e = g.exp(g.sub(x, g.reduce_max(x, 1)))
    return g.div(e, g.reduce_sum(e, 1))


def _plain_softmax(g, x):
    e = g.exp(x)
    return g.div(e, g.reduce_sum(e, 1))


# --- numbers as operands ------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0.125, 1e-6, -1.0, 8.0, 0.0, 1 / 3, -0.7071067811865476,
                                   1e20, 5e-324, 1.7976931348623157e308])
def test_scalar_attributes_are_exact_and_fit_32_bits(value):
    attrs = scalar_attrs(value)
    assert scalar_value(attrs) == value
    num, den = scalar_ratio(attrs)
    assert num / den == value and (num, den) == value.as_integer_ratio() or num == 0
    assert all(abs(v) < 2**31 for v in attrs.values())


def test_builder_takes_numbers_on_either_side_at_both_levels():
    g = mi.new_kernel_graph()
    x = g.new_input((4, 8), mi.float16)
    ops = [g.mul(x, 0.125), g.mul(2, x), g.add(x, 1e-6), g.sub(x, 1.0), g.sub(1.0, x),
           g.div(x, 8.0), g.div(1.0, x), g.add(np.float32(0.5), x)]
    assert [g._nodes[t.ref.node].op for t in ops] == [
        "mul_scalar", "mul_scalar", "add_scalar", "add_scalar", "rsub_scalar", "div_scalar",
        "rdiv_scalar", "add_scalar"]
    assert scalar_value(g._nodes[ops[3].ref.node].attr) == -1.0  # x - 1 is x + (-1)
    tb = mi.new_threadblock_graph((1, 1, 1), 1)
    t = tb.new_input(x, (N, N, N), N)
    assert tb.sub(1.0, tb.mul(t, 0.5)).shape == (4, 8)
    with pytest.raises(InputError):
        g.mul(1.0, 2.0)
    with pytest.raises(InputError):
        g.add(x, float("nan"))
    with pytest.raises(InputError):
        g.rms_norm(x, eps=-1.0)


def test_scalar_ops_mean_the_binary_op_with_the_number():
    f = Field(0)
    x = f.random_input((3, 5))
    xs = np.linspace(0.5, 2, 15).reshape(3, 5)
    for (binary, first), c in [(("add", False), 0.5), (("sub", True), 1.0),
                               (("mul", False), 0.125), (("div", False), 3.0),
                               (("div", True), 2.0)]:
        from mirage.ops.registry import SCALAR_FORMS

        op, sign = SCALAR_FORMS[(binary, first)]
        rec, attrs = get(op), scalar_attrs(sign * c)
        cval = np.full((3, 5), c)
        want = get(binary).float_fn(*((cval, xs) if first else (xs, cval)), {})
        np.testing.assert_allclose(rec.float_fn(xs, attrs), want, rtol=1e-15)
        cf = f.constant(*scalar_ratio(attrs))
        fwant = get(binary).ff_fn(f, *((cf, x) if first else (x, cf)), {})
        got = rec.ff_fn(f, x, attrs)
        assert np.array_equal(got.p, np.broadcast_to(fwant.p, got.p.shape))
    # the field's 0.125 is the exact inverse of 8
    eighth = f.constant(*scalar_ratio(scalar_attrs(0.125)))
    assert (int(eighth.p) * 8) % f.p == 1 and (int(eighth.q) * 8) % f.q == 1


def test_numbers_verify_exactly_and_a_wrong_number_is_rejected():
    shapes = [(16, 64), (64, 32)]
    prog = program(lambda g, x, w: g.matmul(g.mul(x, 0.125), w), shapes)
    assert verify(prog, program(lambda g, x, w: g.div(g.matmul(x, w), 8.0), shapes))
    assert not verify(prog, program(lambda g, x, w: g.mul(g.matmul(x, w), 0.126), shapes))
    assert not verify(prog, program(lambda g, x, w: g.matmul(x, w), shapes))
    one_minus = program(lambda g, x, w: g.matmul(g.sub(1.0, x), w), shapes)
    assert verify(one_minus, program(
        lambda g, x, w: g.sub(g.matmul(g.add(g.mul(x, 0.0), 1.0), w), g.matmul(x, w)), shapes))
    assert not verify(one_minus, program(lambda g, x, w: g.matmul(g.sub(x, 1.0), w), shapes))


def test_rms_norm_eps_verifies_against_its_expansion_not_against_no_eps():
    shapes = [(16, 64), (1, 64)]
    prog = program(lambda g, x, s: g.mul(g.rms_norm(x, eps=1e-6), s), shapes)
    expanded = program(lambda g, x, s: g.mul(g.div(x, g.sqrt(g.add(
        g.reduce_mean(g.square(x), 1), 1e-6))), s), shapes)
    assert verify(prog, expanded)
    assert not verify(prog, program(lambda g, x, s: g.mul(g.rms_norm(x), s), shapes))
    assert not verify(prog, program(lambda g, x, s: g.mul(g.rms_norm(x, eps=1e-5), s), shapes))
    # a block graph computing it, and one with the eps of another program
    good = fused(lambda tb, x, s: tb.mul(tb.rms_norm(x, eps=1e-6), s), shapes, 4)
    bad = fused(lambda tb, x, s: tb.mul(tb.rms_norm(x, eps=1e-3), s), shapes, 4)
    assert verify(prog, good) and not verify(prog, bad)


def _rms_eps_loop(dtype=mi.float16, shapes=((4, 64), (64, 64)), grid=2, loop=4,
                  kind="mean_square_last"):
    """The paper's RMSNorm kernel with an eps: X W and mean(X^2) accumulated over the loop,
    then (X W) / sqrt(mean + eps) once after it."""
    g = mi.new_kernel_graph()
    x, w = (g.new_input(s, dtype) for s in shapes)
    tb = mi.new_threadblock_graph((grid, 1, 1), loop)
    tx = tb.new_input(x, (N, N, N), 1)
    tw = tb.new_input(w, (1, N, N), 0)
    acc = tb.forloop_accum(tb.matmul(tx, tw))
    ms = tb.forloop_accum(tx, kind)
    tb.new_output(tb.div(acc, tb.sqrt(tb.add(ms, 1e-6))), (1, N, N))
    (out,) = g.customized([x, w], tb)
    g.mark_output(out)
    return g.kernel_graph()


def test_rms_norm_eps_loop_form_verifies_and_runs():
    prog = program(lambda g, x, w: g.matmul(g.rms_norm(x, eps=1e-6), w), [(4, 64), (64, 64)])
    assert verify(prog, _rms_eps_loop())
    assert not verify(prog, _rms_eps_loop(kind="rms_last"))  # sqrt(mean) where mean belongs
    wrong = program(lambda g, x, w: g.matmul(g.rms_norm(x, eps=1e-4), w), [(4, 64), (64, 64)])
    assert not verify(wrong, _rms_eps_loop())
    for dtype, tol in (("fp32", 1e-5), ("fp16", 2e-2)):
        graph = _rms_eps_loop(dtype, ((5, 48), (48, 20)), 2, 3)  # padded tiles
        got, ref = run_interpreter(graph, _inputs(graph, 2, dtype=dtype), dtype)
        err = np.linalg.norm(got - ref) / np.linalg.norm(ref)
        assert err <= tol, f"{dtype}: {err:.2e}\n{generate(graph).source}"


def test_search_finds_the_loop_form_of_rms_norm_with_eps():
    prog = program(lambda g, x, w: g.matmul(g.rms_norm(x, eps=1e-6), w), [(4, 64), (64, 64)])
    result = search(prog, SearchConfig(max_block_ops=6, max_customized=1, num_workers=1,
                                       keep=30, time_budget_s=300), progress=False)
    bodies = [sorted(n.op for n in g.nodes[g.customized_ids[0]].block.nodes
                     if n.op not in ("input", "output"))
              for g in result.candidates if g.customized_ids
              and g.nodes[g.customized_ids[0]].block.forloop_range > 1]
    assert ["accum_ms_last", "accum_sum", "add_scalar", "div", "matmul", "sqrt"] in bodies, \
        result.report.lines()


# --- tanh, sigmoid, exact GELU ------------------------------------------------------------------

FUNCTIONS = {
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "gelu_erf": torch.nn.functional.gelu,  # torch's default: the erf form
}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_function_float_meaning_matches_torch(name):
    x = np.linspace(-30, 30, 601)
    with np.errstate(all="raise"):
        got = get(name).float_fn(x, {})
    np.testing.assert_allclose(got, FUNCTIONS[name](torch.from_numpy(x)).numpy(),
                               rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_functions_are_random_to_the_verifier(name):
    rec = get(name)
    assert rec.has(Prop.RANDOM_FUNCTION) and rec.has(Prop.ATOM) and not rec.has(Prop.LAX)
    shapes = [(8, 64), (64, 16)]
    prog = program(lambda g, x, w: getattr(g, name)(g.matmul(x, w)), shapes)
    kernel = fused(lambda tb, x, w: getattr(tb, name)(tb.matmul(x, w)), shapes, 1)
    assert verify(prog, kernel)
    other = "sigmoid" if name != "sigmoid" else "tanh"
    assert not verify(prog, program(lambda g, x, w: getattr(g, other)(g.matmul(x, w)), shapes))
    # applied before the matmul instead of after: wrong
    assert not verify(prog, program(lambda g, x, w: g.matmul(getattr(g, name)(x), w), shapes))


def test_gelu_keeps_the_tanh_form_by_default_and_names_the_erf_form():
    g = mi.new_kernel_graph()
    x = g.new_input((4, 8))
    assert g._nodes[g.gelu(x).ref.node].op == "gelu"
    assert g._nodes[g.gelu(x, approximate="none").ref.node].op == "gelu_erf"
    assert not verify(program(lambda g, x: g.gelu(x), [(8, 8)]),
                      program(lambda g, x: g.gelu(x, approximate="none"), [(8, 8)]))


# --- reduce_max and the stable softmax ----------------------------------------------------------


def test_row_max_is_a_symmetric_random_function_and_exp_factors():
    f = Field(1)
    x = f.random_input((4, 6))
    m = get("reduce_max").ff_fn(f, x, {"dim": 1})
    assert m.shape == (4, 1) and m.q is not None
    perm = np.random.default_rng(0).permutation(6)
    shuffled = type(x)(x.p[:, perm], x.q[:, perm])
    assert np.array_equal(get("reduce_max").ff_fn(f, shuffled, {"dim": 1}).p, m.p)
    assert len(set(m.p.ravel())) == 4  # different rows, different values
    assert np.array_equal(f.exp(f.sub(x, m)).p, f.mul(f.exp(x), f.exp(f.sub(
        f.constant(0, 1), m))).p)


def test_stable_softmax_verifies_against_exp_over_row_sum():
    """(a) the max only stabilises: exp(x - m) / sum exp(x - m) == exp(x) / sum exp(x)."""
    assert verify(program(_stable_softmax, [(16, 64)]), program(_plain_softmax, [(16, 64)]))
    assert verify(program(_plain_softmax, [(16, 64)]), program(_stable_softmax, [(16, 64)]))


def test_half_stabilised_softmax_is_rejected():
    """(b) numerator stabilised, denominator not; and a max over the wrong axis."""
    def numerator_only(g, x):
        return g.div(g.exp(g.sub(x, g.reduce_max(x, 1))), g.reduce_sum(g.exp(x), 1))

    def max_of_another_row(g, x):  # the max of the whole column: not a per-row constant
        e = g.exp(g.sub(x, g.reduce_max(x, 0)))
        return g.div(e, g.reduce_sum(e, 1))

    prog = program(_stable_softmax, [(16, 64)])
    assert not verify(prog, program(numerator_only, [(16, 64)]))
    assert not verify(prog, program(max_of_another_row, [(16, 64)]))
    assert not verify(prog, program(lambda g, x: g.exp(g.sub(x, g.reduce_max(x, 1))),
                                    [(16, 64)]))


def test_stable_softmax_is_finite_in_fp16_where_exp_over_sum_overflows():
    """(c) logits of magnitude 20-60 in fp16: the stable form stays within 1e-2 of fp32, the
    plain form overflows (exp(12) > 65504). Both programs run as written (pre-defined kernels:
    the rows' torch_fn on fp16 CPU tensors); the stable form also as one Triton kernel."""
    rng = np.random.default_rng(0)
    x = (rng.uniform(20, 60, (8, 64)) * rng.choice([-1, 1], (8, 64))).astype(np.float16)
    want = torch.softmax(torch.from_numpy(x).float(), -1).numpy()
    t = torch.from_numpy(x)
    stable = compile_graph(program(_stable_softmax, [(8, 64)]), mode="interpret")(t)
    plain = compile_graph(program(_plain_softmax, [(8, 64)]), mode="interpret")(t)
    assert stable.dtype == plain.dtype == torch.float16
    assert torch.isfinite(stable).all()
    assert np.abs(stable.float().numpy() - want).max() <= 1e-2
    assert not torch.isfinite(plain).all()
    kernel, _ = run_interpreter(fused(_stable_softmax, [(8, 64)], 2), [x.astype(np.float32)],
                                "fp16")
    assert np.isfinite(kernel).all() and np.abs(kernel - want).max() <= 1e-2


# --- Triton: the interpreter and ahead-of-time compile ------------------------------------------

BLOCK_CASES = {
    "scalars": (lambda tb, x, s: tb.div(2.0, tb.add(tb.mul(tb.sub(1.0, tb.div(tb.add(
        x, 0.5), 8.0)), s), 3.0)), [(6, 20), (1, 20)]),
    "rms_norm_eps": (lambda tb, x, s: tb.mul(tb.rms_norm(x, eps=1e-6), s), [(6, 20), (1, 20)]),
    "tanh": (lambda tb, x, s: tb.mul(tb.tanh(x), s), [(6, 20), (1, 20)]),
    "sigmoid": (lambda tb, x, s: tb.mul(tb.sigmoid(x), s), [(6, 20), (1, 20)]),
    "gelu_erf": (lambda tb, x, s: tb.mul(tb.gelu(x, approximate="none"), s), [(6, 20), (1, 20)]),
    "reduce_max": (lambda tb, x, s: tb.sub(x, tb.reduce_max(tb.mul(x, s), 1)),
                   [(6, 20), (1, 20)]),
    "softmax": (lambda tb, x, s: _stable_softmax(tb, tb.mul(x, s)), [(6, 20), (1, 20)]),
}


@pytest.mark.parametrize("dtype,tol", [("fp32", 1e-5), ("fp16", 2e-2)])
@pytest.mark.parametrize("case", sorted(BLOCK_CASES))
def test_block_ops_in_the_interpreter_match_the_float_meaning(case, dtype, tol):
    build, shapes = BLOCK_CASES[case]
    graph = fused(build, shapes, 2, dtype)  # 3 rows of 20 columns: tiles padded to 4 x 32
    # all-negative rows: a max that counted the zero padding would be wrong
    xs = _inputs(graph, 1, dtype=dtype)
    xs[0] = -np.abs(xs[0]) - 0.5
    got, ref = run_interpreter(graph, xs, dtype)
    assert np.isfinite(got).all()
    err = np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30)
    assert err <= tol, f"relative error {err:.2e}\n{generate(graph).source}"


def test_kernel_level_runs_each_row_torch_fn():
    """The input program as written: every op a pre-defined kernel (torch_fn)."""
    def build(g, x, s):
        y = g.sub(1.0, g.div(g.mul(g.add(g.rms_norm(x, eps=1e-6), 0.5), s), 8.0))
        y = g.div(2.0, g.add(g.gelu(g.tanh(g.sigmoid(y)), approximate="none"), 3.0))
        return _stable_softmax(g, g.mul(y, 30.0))

    graph = program(build, [(4, 8), (1, 8)], mi.float32)
    xs = _inputs(graph)
    (ref,) = evaluate(graph, xs, FloatSemantics(np.float64))
    out = compile_graph(graph, mode="interpret")(*[torch.from_numpy(a) for a in xs])
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1",
                    reason="AOT compile needs triton imported without TRITON_INTERPRET")
def test_new_ops_compile_ahead_of_time_for_sm90(tmp_path):
    def build(tb, x, s):
        y = BLOCK_CASES["scalars"][0](tb, tb.rms_norm(x, eps=1e-6), s)
        y = tb.gelu(tb.tanh(tb.sigmoid(y)), approximate="none")
        return _stable_softmax(tb, y)

    module = generate(fused(build, [(64, 96), (1, 96)], 4))
    assert "tl.math.erf(" in module.source and "tl.max(" in module.source
    mod = import_source(write_source(module, tmp_path))
    for spec in module.kernels:
        aot_compile(mod, spec, 90)


# --- the search places each op --------------------------------------------------------------------

SEARCH_CASES = {
    "mul_scalar": (lambda g, x, w: g.matmul(g.mul(x, 0.125), w), [(4, 64), (64, 64)], 4),
    "rms_norm_eps": (lambda g, x, s: g.mul(g.rms_norm(x, eps=1e-6), s), [(16, 64), (1, 64)], 4),
    "tanh": (lambda g, x, w: g.tanh(g.matmul(x, w)), [(4, 64), (64, 64)], 4),
    "sigmoid": (lambda g, x, s: g.mul(g.sigmoid(x), s), [(16, 64), (1, 64)], 4),
    "gelu_erf": (lambda g, x, w: g.gelu(g.matmul(x, w), approximate="none"),
                 [(4, 64), (64, 64)], 4),
    "reduce_max": (_stable_softmax, [(16, 64)], 6),
}


@pytest.mark.parametrize("op", sorted(SEARCH_CASES))
def test_search_finds_a_fused_verified_candidate_with_the_op(op):
    build, shapes, max_ops = SEARCH_CASES[op]
    prog = program(build, shapes)
    result = search(prog, SearchConfig(max_block_ops=max_ops, num_workers=1, keep=4,
                                       time_budget_s=120), progress=False)
    one_kernel = [g for g in result.candidates
                  if [n.op for n in g.nodes if n.op != "input"] == ["customized"]]
    with_op = [g for g in one_kernel
               if op in {n.op for n in g.nodes[g.customized_ids[0]].block.nodes}]
    assert with_op, result.report.lines()
    assert all(verify(prog, g) for g in with_op)


def test_new_rows_are_complete():
    for name in ("add_scalar", "mul_scalar", "div_scalar", "rsub_scalar", "rdiv_scalar",
                 "rms_norm_eps", "tanh", "sigmoid", "gelu_erf", "reduce_max"):
        rec = REGISTRY[name]
        assert rec.torch_fn is not None and rec.float_fn and rec.ff_fn and rec.expr_fn
        assert rec.emit and rec.flops and math.isfinite(rec.pad) == (name != "reduce_max")
