"""Every registry row, whatever op it is, works through every layer: adding an op is a row plus
its own tests. Parametrized over ``REGISTRY``, so a new row is covered here without a change.

* kernel level: the row's torch_fn agrees with its float meaning;
* the abstract expression normalises, and the search's vocabulary is derived from properties;
* block level: the op inside a graph-defined kernel runs in Triton's CPU interpreter (padded,
  masked tiles) and agrees with the float meaning;
* the finite field: a random-function op is shared by both graphs (f(x) == f(x)) yet differs
  from every other random function.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mirage as mi
from mirage.expr import normalize
from mirage.ir import IRError
from mirage.ops import REGISTRY, Level, Prop, var
from mirage.ops.field import Field
from mirage.ops.registry import SCALAR_ATTRS, scalar_attrs
from mirage.runtime import compile as compile_graph
from mirage.search.block import FUNCTIONS, SCALAR_OPS
from mirage.semantics.meanings import FloatSemantics
from mirage.semantics.walker import evaluate

N = None
OPS = sorted(n for n, r in REGISTRY.items() if not r.has(Prop.IO))
BLOCK_OPS = sorted(n for n in OPS if Level.BLOCK in REGISTRY[n].levels
                   and not REGISTRY[n].has(Prop.ACCUMULATOR))


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MIRAGE_CACHE_DIR", str(tmp_path / "cache"))


def sample_attrs(rec) -> dict:
    attrs = {"dim": 1, "dim0": 0, "dim1": 1}
    attrs.update(scalar_attrs(0.75))
    return {k: attrs[k] for k in rec.attrs}


def operand_shapes(rec) -> list[tuple[int, ...]]:
    if rec.name == "matmul":
        return [(6, 12), (12, 10)]
    if rec.arity == 2:
        return [(6, 10), (1, 10)]  # a broadcast row
    return [(6, 10)]


def positive_inputs(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(0.5, 2.0, s) for s in shapes]  # inside every op's domain


@pytest.mark.parametrize("name", [n for n in OPS if REGISTRY[n].torch_fn is not None])
def test_torch_fn_agrees_with_the_float_meaning(name):
    rec = REGISTRY[name]
    attrs, shapes = sample_attrs(rec), operand_shapes(rec)
    xs = positive_inputs(shapes)
    want = rec.float_fn(*xs, attrs)
    out = torch.empty(rec.shape(shapes, attrs), dtype=torch.float64)
    got = rec.torch_fn(out, *(torch.from_numpy(x) for x in xs), attrs)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)  # norms reduce in fp32


@pytest.mark.parametrize("name", OPS)
def test_the_abstract_expression_normalises(name):
    rec = REGISTRY[name]
    attrs, shapes = sample_attrs(rec), operand_shapes(rec)
    term = rec.expr_fn([var(f"x{i}") for i in range(rec.arity)], attrs, shapes)
    poly = normalize(term)
    assert poly.terms
    if rec.has(Prop.ATOM):
        assert term.head == name
    if rec.attrs == SCALAR_ATTRS:  # the number is kept, so applying it is not a no-op
        assert "const" in str(term)


def test_search_vocabulary_follows_the_properties():
    assert FUNCTIONS == {n for n in BLOCK_OPS if REGISTRY[n].has(Prop.ATOM)}
    assert {"tanh", "sigmoid", "gelu_erf", "reduce_max", "exp", "sqrt"} <= FUNCTIONS
    assert SCALAR_OPS == {n for n in BLOCK_OPS if REGISTRY[n].attrs == SCALAR_ATTRS}


@pytest.mark.parametrize("name", [n for n in OPS if REGISTRY[n].has(Prop.RANDOM_FUNCTION)])
def test_random_functions_are_shared_and_distinct(name):
    rec = REGISTRY[name]
    f = Field(7)
    attrs = sample_attrs(rec)
    x = f.random_input((4, 6))
    a, b = rec.ff_fn(f, x, attrs), rec.ff_fn(f, x, attrs)
    assert np.array_equal(a.p, b.p)
    others = [n for n in OPS if n != name and REGISTRY[n].has(Prop.RANDOM_FUNCTION)
              and REGISTRY[n].shape is rec.shape]
    for other in others:
        assert not np.array_equal(REGISTRY[other].ff_fn(f, x, sample_attrs(REGISTRY[other])).p,
                                  a.p), other


def _block_graph(rec, dtype):
    """``rec`` applied to whole-row tiles (3 x 10 padded to 4 x 16), one block per 3 rows."""
    shapes = operand_shapes(rec)
    g = mi.new_kernel_graph()
    xs = [g.new_input(s, dtype) for s in shapes]
    tb = mi.new_threadblock_graph((2, 1, 1), 1)
    tiles = [tb.new_input(x, (0 if k == 0 else N, N, N), N) for k, x in enumerate(xs)]
    y = tb._op(rec.name, tiles, sample_attrs(rec))
    if rec.name == "transpose":
        y = tb.transpose(y, 0, 1)  # back, so the output splits its first dim
    tb.new_output(tb.forloop_accum(y), (0, N, N))
    (out,) = g.customized(xs, tb)
    g.mark_output(out)
    return g.kernel_graph()


@pytest.mark.parametrize("name", BLOCK_OPS)
def test_every_block_op_runs_in_the_interpreter(name):
    rec = REGISTRY[name]
    try:
        graph = _block_graph(rec, mi.float32)
    except IRError as e:
        pytest.skip(f"{name} does not apply to these tiles: {e}")
    xs = [x.astype(np.float32) for x in positive_inputs([t.shape for t in graph.input_types])]
    (ref,) = evaluate(graph, xs, FloatSemantics(np.float32))
    fn = compile_graph(graph, mode="interpret")
    out = torch.full(ref.shape, float("nan"), dtype=torch.float32)
    with np.errstate(all="ignore"):
        fn(*[torch.from_numpy(x) for x in xs], out=[out])
    np.testing.assert_allclose(out.numpy(), ref, rtol=2e-5, atol=1e-6)
