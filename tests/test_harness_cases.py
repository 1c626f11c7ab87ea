"""The benchmark rows: complete, consistent with mirage.workloads, and their fp32 reference
computes exactly the input program (checked against the µGraph float semantics)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from baselines import registry
from baselines.eager import DEFINITIONS
from mirage.semantics import FloatSemantics, evaluate
from mirage.workloads import WORKLOADS
from scripts.harness.cases import (
    BATCHES_HOPPER,
    CASES,
    UPSTREAM_QUIRKS,
    reference,
    relative_error,
    select,
    single_output,
)
from scripts.harness.measure import check

SMALL = {
    "gqa": {"Q": (2, 8, 16), "K": (2, 32, 16), "V": (2, 32, 16)},
    "qknorm": {"Q": (2, 8, 16), "K": (2, 32, 16), "V": (2, 32, 16)},
    "rmsnorm": {"X": (4, 64), "W": (64, 32)},
    "lora": {"X": (3, 32), "W": (32, 48), "A": (32, 16), "B": (16, 48)},
    "gatedmlp": {"X": (3, 32), "W1": (32, 48), "W2": (32, 48)},
    "ntrans": {"H": (3, 64), "X": (3, 64), "alpha": (3, 64)},
}


def test_rows_cover_the_workloads():
    assert set(CASES) == set(WORKLOADS) == set(SMALL) == set(DEFINITIONS)
    names = registry()
    for case in CASES.values():
        assert case.baselines and all(n in names for n in case.baselines), case.name
        assert case.name in {c for n in case.baselines for c in names[n].cases}
        for b in BATCHES_HOPPER:
            assert list(case.shapes(b)) == list(case.inits)
            assert case.program(b).input_types[0].shape == next(iter(case.shapes(b).values()))
    assert len(UPSTREAM_QUIRKS) >= 6


@pytest.mark.parametrize("name", list(CASES))
def test_reference_is_the_input_program(name):
    """The torch definitions (eager baseline and fp32 reference) against the µGraph walker."""
    case = CASES[name]
    shapes = SMALL[name]
    inputs = case.inputs(shapes, seed=11)
    ref = reference(case, inputs).double().numpy()
    graph = case.program(1, shapes)
    want = evaluate(graph, [x.double().numpy() for x in inputs], FloatSemantics(np.float64))[0]
    np.testing.assert_allclose(ref, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("name", list(CASES))
def test_eager_fp16_passes_at_canonical_shapes(name):
    """The input distributions keep fp16 finite (no overflow of the unshifted exp) and the
    tolerance leaves room for honest fp16 rounding."""
    case = CASES[name]
    result = check(case, case.shapes(1), DEFINITIONS[name], [1, 2], "cpu")
    assert result.passed, result.error
    assert result.rel_err < case.tolerance / 4


def test_inputs_are_reproducible_and_fresh():
    case = CASES["qknorm"]
    shapes = SMALL["qknorm"]
    a, b, c = (case.inputs(shapes, s) for s in (5, 5, 6))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])
    assert all(x.dtype == torch.float16 for x in a)
    with pytest.raises(ValueError):
        case.inputs({"Q": (2, 8, 16)}, 1)


def test_relative_error_and_outputs():
    ref = torch.ones(2, 3)
    assert relative_error(ref.half(), ref) == 0
    assert math.isinf(relative_error(torch.ones(3, 2), ref))
    assert math.isinf(relative_error(torch.full((2, 3), float("nan")), ref))
    assert relative_error(ref * 1.5, ref) == pytest.approx(0.5)
    assert single_output([ref]) is ref and single_output(ref) is ref
    with pytest.raises(ValueError):
        single_output([ref, ref])


def test_select():
    assert [c.name for c in select("ntrans,gqa", CASES)] == ["gqa", "ntrans"]
    assert len(select(None, CASES)) == len(CASES)
    with pytest.raises(ValueError, match="unknown: nope"):
        select("gqa,nope", CASES)
