"""The verifier: accepts the reference µGraphs, rejects the planted catalog, beats upstream's."""

import numpy as np
import pytest
from planted import CATALOG, attention_graph, upstream_qknorm_program
from planted import off_by_one_loop_split as build_off_by_one

from mirage.api import new_kernel_graph
from mirage.ops.field import FFValue, Field
from mirage.semantics import FieldSemantics, evaluate
from mirage.verify import VerifyConfig, trial_bound, verify
from mirage.verify.verifier import field_trial
from mirage.workloads import BATCHES, PROGRAMS, REFERENCES, WORKLOADS, program, reference
from mirage.workloads.programs import inputs_of

SMALL = {
    "gqa": {"Q": (2, 16, 8), "K": (2, 64, 8), "V": (2, 64, 8)},
    "qknorm": {"Q": (2, 16, 8), "K": (2, 64, 8), "V": (2, 64, 8)},
    "rmsnorm": {"X": (4, 64), "W": (64, 96)},
    "lora": {"X": (2, 64), "W": (64, 128), "A": (64, 16), "B": (16, 128)},
    "gatedmlp": {"X": (2, 64), "W1": (64, 128), "W2": (64, 128)},
    "ntrans": {"H": (3, 64), "X": (3, 64), "alpha": (3, 64)},
}
SMALL_TILES = {
    "gqa": {"kv_splits": 2, "row_splits": 2, "tile_kv": 16, "combine_rows": 2},
    "qknorm": {"kv_splits": 2, "row_splits": 2, "tile_kv": 16, "combine_rows": 2},
    "rmsnorm": {"tile_n": 32, "tile_k": 16},
    "lora": {"tile_n": 32, "tile_k": 16},
    "gatedmlp": {"tile_n": 32, "tile_k": 16},
    "ntrans": {},
}


@pytest.mark.parametrize("case", WORKLOADS)
@pytest.mark.parametrize("b", BATCHES)
def test_reference_mugraphs_verify_at_canonical_shapes(case, b):
    verdict = verify(program(case, b), reference(case, b))
    assert verdict, verdict.reason
    assert verdict.trials >= 3 and verdict.bound <= 1e-12
    assert verdict.float_error <= 1e-6


@pytest.mark.parametrize("case", WORKLOADS)
def test_reference_mugraphs_verify_at_small_shapes(case):
    shapes = SMALL[case]
    verdict = verify(PROGRAMS[case](shapes), REFERENCES[case](shapes, **SMALL_TILES[case]))
    assert verdict, verdict.reason


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_planted_wrong_mugraphs_are_rejected(name):
    prog, wrong = CATALOG[name]()
    verdict = verify(prog, wrong)
    assert not verdict
    assert verdict.reason  # says why


def test_catalog_is_large_enough():
    assert len(CATALOG) >= 8


def test_off_by_one_is_caught_by_the_field_test_too():
    """Even past the validity rules, the random test sees the unread chunk."""
    prog, wrong = build_off_by_one()
    assert "invalid candidate" in verify(prog, wrong).reason
    assert field_trial(prog, wrong, Field(seed=1)) is not None


def _gated(shapes, act: str, swap: bool):
    g = new_kernel_graph()
    x, w1, w2 = inputs_of(g, shapes, "fp16")
    gate = getattr(g, act)(g.matmul(x, w1))
    up = g.matmul(x, w2)
    g.mark_output(g.mul(up, gate) if swap else g.mul(gate, up))
    return g.kernel_graph()


def test_non_lax_ops_are_random_functions_shared_by_both_graphs():
    shapes = SMALL["gatedmlp"]
    prog = _gated(shapes, "silu", swap=False)
    assert verify(prog, _gated(shapes, "silu", swap=True))  # same silu on both sides
    assert not verify(prog, _gated(shapes, "gelu", swap=True))  # another random function


def upstream_style_check(prog, cand, p=167, q=83) -> bool:
    """The upstream artifact's check: inputs = element index, p = 167, q = 83, one trial."""
    omega = next(w for g in range(2, p) if (w := pow(g, (p - 1) // q, p)) != 1)
    field = Field(seed=0, p=p, q=q, omega=omega)
    inputs = []
    for t in prog.input_types:
        index = np.arange(np.prod(t.shape), dtype=np.int64).reshape(t.shape)
        inputs.append(FFValue(index % p, index % q))
    sem = FieldSemantics(field)
    expected, got = evaluate(prog, inputs, sem), evaluate(cand, inputs, sem)
    return all(np.array_equal(a.p, b.p) for a, b in zip(expected, got, strict=True))


def test_upstream_style_check_accepts_the_sum_before_exp_bug_and_ours_rejects_it():
    shapes = SMALL["qknorm"]
    prog = upstream_qknorm_program(shapes)  # norms on Q and V, as upstream wrote QKNorm
    wrong = attention_graph(shapes, norm=("Q", "V"), scores="sum_before_exp")
    # With index inputs every row of K is an arithmetic progression, so sum_d q_d * mean_d k_d
    # differs from q . k by a per-row constant that the softmax cancels: the weak check passes.
    assert upstream_style_check(prog, wrong)
    assert not verify(prog, wrong)
    # The correct graph passes both.
    right = attention_graph(shapes, norm=("Q", "V"))
    assert upstream_style_check(prog, right)
    assert verify(prog, right)


def test_trials_follow_the_stated_bound():
    prog, ref = program("rmsnorm", 1), reference("rmsnorm", 1)
    eps = trial_bound(prog, ref)
    assert 0 < eps < 1e-3
    strict = verify(prog, ref, VerifyConfig(target_false_pass=1e-30, float_check=False))
    assert strict.trials > 3 and strict.bound <= 1e-30


def test_verdicts_are_reproducible_for_a_seed():
    prog, wrong = CATALOG["wrong_accumulator_kind"]()
    assert verify(prog, wrong).reason == verify(prog, wrong).reason
