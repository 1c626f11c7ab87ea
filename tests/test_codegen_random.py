"""Randomized small block graphs through the Triton backend: interpreter and AOT tiers.

A seeded generator builds valid µGraphs of a few shapes of computation (matmul with pre/post
elementwise ops and several accumulators, broadcasting elementwise chains, batched matmuls,
transposes and in-block reductions) at odd sizes, so tiles get padded and masked. Each one runs
in Triton's CPU interpreter against ``evaluate(graph, inputs, FloatSemantics(np.float32))`` and
compiles ahead of time for sm_90.
"""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from mirage.api import new_kernel_graph, new_threadblock_graph
from mirage.codegen import generate
from mirage.codegen.load import aot_compile, import_source, write_source
from mirage.ir import IRError, KernelGraph
from mirage.runtime import compile as compile_graph
from mirage.semantics.meanings import FloatSemantics
from mirage.semantics.walker import evaluate

N = None
UNARY = ("exp", "square", "silu", "relu", "gelu")
SEEDS = range(30)
TORCH = {"fp16": torch.float16, "fp32": torch.float32}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MIRAGE_CACHE_DIR", str(tmp_path / "cache"))


def _divisors(n: int, limit: int) -> list[int]:
    return [d for d in range(1, min(n, limit) + 1) if n % d == 0]


def _unary(rng, tb, x, p=0.5):
    return getattr(tb, rng.choice(UNARY))(x) if rng.random() < p else x


def _matmul_graph(rng, dtype) -> KernelGraph:
    """(f(X) W) accumulated, with an optional RMS accumulator and post-loop ops."""
    m, k, n = rng.choice([1, 2, 3, 5, 8]), rng.choice([4, 6, 8, 12, 24]), rng.choice([3, 4, 8, 12])
    transposed = rng.random() < 0.3
    g = new_kernel_graph()
    x = g.new_input((k, m) if transposed else (m, k), dtype, "X")
    w = g.new_input((k, n), dtype, "W")
    gx, gy = rng.choice(_divisors(n, 4)), rng.choice(_divisors(m, 2))
    r = rng.choice(_divisors(k, 4))
    tb = new_threadblock_graph((gx, gy, 1), r)
    tx = tb.new_input(x, (N, 1, N) if transposed else (N, 0, N), 0 if transposed else 1)
    if transposed:
        tx = tb.transpose(tx, 0, 1)
    tw = tb.new_input(w, (1, N, N), 0)
    y = tb.matmul(_unary(rng, tb, tx, 0.4), tw)
    y = _unary(rng, tb, y, 0.3)
    kind = rng.choice(["sum", "sum", "sum_last", "rms"])
    acc = tb.forloop_accum(y, kind)
    if kind == "sum" and rng.random() < 0.5:
        acc = tb.div(acc, tb.forloop_accum(tx, "rms"))
    out = _unary(rng, tb, acc, 0.4)
    tb.new_output(out, (1, 0, N))
    (o,) = g.customized([x, w], tb)
    g.mark_output(o)
    return g.kernel_graph()


def _elementwise_graph(rng, dtype) -> KernelGraph:
    """Broadcasting binary ops over row tiles, reduced over the loop."""
    m, n = rng.choice([1, 2, 3, 4, 6]), rng.choice([5, 8, 12, 20, 32])
    y_shape = rng.choice([(m, n), (1, n), (m, 1)])
    g = new_kernel_graph()
    x = g.new_input((m, n), dtype, "X")
    yy = g.new_input(y_shape, dtype, "Y")
    gy = rng.choice(_divisors(m, 3)) if y_shape[0] == m else 1
    r = rng.choice(_divisors(n, 4))
    tb = new_threadblock_graph((1, gy, 1), r)
    tx = tb.new_input(x, (N, 0, N), 1)
    ty = tb.new_input(yy, (N, 0 if y_shape[0] == m and m > 1 else N, N),
                      1 if y_shape[1] == n else N)
    op = rng.choice(["add", "sub", "mul", "div"])
    rhs = tb.exp(ty) if op == "div" else ty
    z = getattr(tb, op)(_unary(rng, tb, tx), rhs)
    if rng.random() < 0.3:
        z = tb.reduce_sum(z, 0)
    kind = rng.choice(["sum", "sum_last", "rms"])
    out = _unary(rng, tb, tb.forloop_accum(z, kind), 0.5)
    tb.new_output(out, (N, 0, N))
    (o,) = g.customized([x, yy], tb)
    g.mark_output(o)
    return g.kernel_graph()


def _batched_graph(rng, dtype) -> KernelGraph:
    """A batched matmul split over the batch by the grid (or kept whole: a 3-D tl.dot)."""
    b, m, k, n = rng.choice([2, 4]), rng.choice([2, 3, 16]), rng.choice([8, 16]), rng.choice([4, 8])
    g = new_kernel_graph()
    q = g.new_input((b, m, k), dtype, "Q")
    kk = g.new_input((b, k, n), dtype, "K")
    gx = rng.choice([1, b])
    r = rng.choice(_divisors(k, 2))
    tb = new_threadblock_graph((gx, 1, 1), r)
    tq = tb.new_input(q, (0, N, N), 2)
    tk = tb.new_input(kk, (0, N, N), 1)
    acc = tb.forloop_accum(tb.matmul(tq, tk))
    out = tb.div(acc, tb.forloop_accum(tq, "rms")) if rng.random() < 0.5 else acc
    tb.new_output(_unary(rng, tb, out, 0.3), (0, N, N))
    (o,) = g.customized([q, kk], tb)
    g.mark_output(o)
    return g.kernel_graph()


def random_graph(seed: int, dtype: str = "fp32") -> KernelGraph:
    """A valid random µGraph; the same seed gives the same graph."""
    rng = random.Random(seed)
    makers = (_matmul_graph, _elementwise_graph, _batched_graph)
    for _ in range(100):
        try:
            return makers[seed % len(makers)](rng, dtype)
        except IRError:
            continue  # an invalid combination (e.g. an uneven split): draw again
    raise AssertionError(f"no valid graph for seed {seed}")


def _inputs(graph: KernelGraph, seed: int, dtype: str) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    xs = [0.5 * rng.standard_normal(t.shape).astype(np.float32) for t in graph.input_types]
    # round to the tensor dtype, so the reference sees exactly what the kernel sees
    return [torch.from_numpy(x).to(TORCH[dtype]).float().numpy() for x in xs]


def check_interpreter(graph: KernelGraph, dtype: str, seed: int, tol: float) -> None:
    xs = _inputs(graph, seed, dtype)
    (ref,) = evaluate(graph, xs, FloatSemantics(np.float32))
    fn = compile_graph(graph, mode="interpret")
    out = torch.full(ref.shape, float("nan"), dtype=TORCH[dtype])
    with np.errstate(all="ignore"):  # padding lanes may divide 0 by 0; they are masked
        fn(*[torch.from_numpy(x).to(TORCH[dtype]) for x in xs], out=[out])
    got = out.float().numpy()
    assert np.isfinite(got).all(), "an output element was not written (NaN poison survived)"
    err = np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30)
    assert err <= tol, f"relative L2 error {err:.2e} > {tol}\n{generate(graph).source}"


@pytest.mark.parametrize("seed", SEEDS)
def test_random_graph_interpreter_fp32(seed):
    check_interpreter(random_graph(seed, "fp32"), "fp32", seed, 1e-4)


@pytest.mark.parametrize("seed", SEEDS[::3])
def test_random_graph_interpreter_fp16(seed):
    check_interpreter(random_graph(seed, "fp16"), "fp16", seed, 2e-2)


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1",
                    reason="AOT compile needs triton imported without TRITON_INTERPRET")
@pytest.mark.parametrize("seed", SEEDS)
def test_random_graph_aot_sm90(seed, tmp_path):
    graph = random_graph(seed, "fp16")
    module = generate(graph)
    mod = import_source(write_source(module, tmp_path))
    for spec in module.kernels:
        aot_compile(mod, spec, 90)


def test_generator_covers_padding_and_shapes():
    """The random graphs exercise what they are for: padded tiles, 3-D dots, transposes."""
    sources = [generate(random_graph(s)).source for s in SEEDS]
    assert sum("# padded to" in s for s in sources) >= 10
    assert any("tl.trans(" in s for s in sources)
    assert any("tl.dot(" in s and "BLOCK_Q0" in s for s in sources)  # an unsqueezed batch dim
