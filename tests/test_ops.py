"""The op registry: every record complete; the finite-field meanings obey the paper's axioms."""

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mirage.ops import REGISTRY, Level, Prop, get
from mirage.ops.field import Field, NotLaxError

REQUIRED = ("levels", "arity", "props", "shape", "float_fn", "ff_fn", "expr_fn", "emit", "flops")


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_record_fills_every_field(name):
    rec = REGISTRY[name]
    for f in REQUIRED:
        assert getattr(rec, f) is not None, f"{name}.{f} missing"
    assert rec.levels and rec.arity >= 1
    assert isinstance(rec.emit([f"x{i}" for i in range(rec.arity)], _attrs(rec),
                               [(4, 4)] * rec.arity), str)
    if rec.has(Prop.ACCUMULATOR):
        assert rec.finish is not None and rec.levels == frozenset({Level.BLOCK})
    assert rec.has(Prop.LAX) != rec.has(Prop.RANDOM_FUNCTION) or rec.has(Prop.IO)


def test_paper_operator_set_is_present():
    for name in ("matmul", "exp", "square", "sqrt", "silu", "gelu", "relu", "add", "sub", "mul",
                 "div", "reduce_sum", "rms_norm", "transpose", "input", "output", "accum_sum",
                 "accum_sum_last", "accum_rms_last"):
        assert name in REGISTRY


def test_unknown_op_names_itself():
    with pytest.raises(KeyError, match="nope"):
        get("nope")


def _attrs(rec):
    return {k: {"dim": 1, "dim0": 0, "dim1": 1, "scalar_hi": 0, "scalar_lo": 1,
                "scalar_exp": -3}[k] for k in rec.attrs}


TORCH = {
    "exp": torch.exp,
    "square": torch.square,
    "sqrt": torch.sqrt,
    "silu": torch.nn.functional.silu,
    "gelu": lambda x: torch.nn.functional.gelu(x, approximate="tanh"),
    "relu": torch.relu,
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "div": torch.div,
    "matmul": torch.matmul,
    "reduce_sum": lambda x: x.sum(1, keepdim=True),
    "reduce_mean": lambda x: x.mean(1, keepdim=True),
    "rms_norm": lambda x: x / x.square().mean(-1, keepdim=True).sqrt(),
    "transpose": lambda x: x.transpose(0, 1),
}


@pytest.mark.parametrize("name", sorted(TORCH))
def test_float_meaning_matches_torch(name):
    rec = get(name)
    rng = np.random.default_rng(0)
    args = [rng.uniform(0.5, 2.0, (6, 6)) for _ in range(rec.arity)]
    got = rec.float_fn(*args, _attrs(rec))
    want = TORCH[name](*(torch.from_numpy(a) for a in args)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12)


# --- axioms on random field values (the paper's A_eq, where they are exact identities) --------

values = st.integers(min_value=0, max_value=2**31)


def _field_values(seed, n=3, shape=(5, 5)):
    f = Field(seed)
    return f, [f.random_input(shape) for _ in range(n)]


def _eq(a, b):
    return np.array_equal(a.p, b.p) and (a.q is None) == (b.q is None) and (
        a.q is None or np.array_equal(a.q, b.q)
    )


@settings(max_examples=25, deadline=None)
@given(values)
def test_ring_axioms(seed):
    f, (x, y, z) = _field_values(seed)
    assert _eq(f.add(x, y), f.add(y, x))
    assert _eq(f.mul(x, y), f.mul(y, x))
    assert _eq(f.add(f.add(x, y), z), f.add(x, f.add(y, z)))
    assert _eq(f.mul(f.mul(x, y), z), f.mul(x, f.mul(y, z)))
    assert _eq(f.mul(f.add(x, y), z), f.add(f.mul(x, z), f.mul(y, z)))  # distributivity
    assert _eq(f.div(f.add(x, y), z), f.add(f.div(x, z), f.div(y, z)))
    assert _eq(f.mul(x, f.div(y, z)), f.div(f.mul(x, y), z))  # mul/div reassociation


@settings(max_examples=25, deadline=None)
@given(values)
def test_exp_of_sum_is_product_of_exps(seed):
    f, (x, y) = _field_values(seed, 2)
    assert np.array_equal(f.exp(f.add(x, y)).p, f.mul(f.exp(x), f.exp(y)).p)


@settings(max_examples=25, deadline=None)
@given(values)
def test_sum_axioms(seed):
    f, (x, y) = _field_values(seed, 2, (4, 6))
    # sum(i, sum(j, x)) = sum(i*j, x); sum distributes over add; commutes with a non-reduced mul
    both = f.reduce_sum(f.reduce_sum(x, 0), 1)
    flat = dataclasses.replace(x, p=x.p.reshape(1, -1), q=x.q.reshape(1, -1))
    assert _eq(both, f.reduce_sum(flat, 1))
    assert _eq(f.reduce_sum(f.add(x, y), 1), f.add(f.reduce_sum(x, 1), f.reduce_sum(y, 1)))
    col = dataclasses.replace(y, p=y.p[:, :1], q=y.q[:, :1])
    assert _eq(f.reduce_sum(f.mul(x, col), 1), f.mul(f.reduce_sum(x, 1), col))


def test_exp_of_exp_is_outside_lax():
    f, (x,) = _field_values(0, 1)
    with pytest.raises(NotLaxError):
        f.exp(f.exp(x))


def test_random_functions_are_deterministic_within_a_trial_and_differ_across():
    f, (x,) = _field_values(3, 1)
    assert _eq(f.random_function("sqrt", x), f.random_function("sqrt", x))
    assert not _eq(f.random_function("sqrt", x), f.random_function("silu", x))
    assert not _eq(f.random_function("sqrt", x), Field(4).random_function("sqrt", x))


def test_field_matmul_is_exact():
    f, (x, y) = _field_values(5, 2, (8, 3000))
    y = dataclasses.replace(y, p=y.p.reshape(3000, 8), q=y.q.reshape(3000, 8))
    exact = (x.p.astype(object) @ y.p.astype(object)) % f.p
    assert np.array_equal(f.matmul(x, y).p, exact.astype(np.int64))
