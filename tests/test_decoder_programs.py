"""The generality suite: sixteen programs from real decoder layers (``tests/decoder_programs.py``)
through the public search, at small shapes so that a CPU searches them in the test tier.

Every program gets an answer (never an empty list; the program itself comes last), every
candidate verifies against the program, and the ones the search can fuse today are pinned as
fused so a regression shows. The others are known gaps, each with the reason the report gives:
several outputs (fused add + RMSNorm, QKV), a softmax after a matmul within 6 block ops
(attention decode), a mean whose 1/n the pruning drops (LayerNorm: the one complete candidate
fails verification) and a chain of elementwise ops with numbers (soft-capping: no layout class).
"""

from __future__ import annotations

import pytest
from decoder_programs import PROGRAMS

from mirage.search import SearchConfig, search
from mirage.verify import verify

CONFIG = SearchConfig(max_kernel_ops=3, max_block_ops=6, time_budget_s=120, keep=3)
FUSED = {"rmsnorm_gain_proj", "gemma_rmsnorm_offset", "attention_scores", "stable_softmax",
         "swiglu", "gate_up_sigmoid", "gelu_mlp_up", "gelu_exact_head", "lora", "relu_mlp",
         "scaled_residual"}
GAPS = {
    "fused_add_rmsnorm": "no complete candidate within the limits",
    "qkv_projection": "no complete candidate within the limits",
    "attention_decode": "no complete candidate within the limits",
    # the abstract expression drops reduce_mean's 1/n, so the candidate it lets through
    # (a mean taken as a sum) is wrong, and the verifier rejects it
    "layernorm": "every complete candidate failed verification",
    "softcap": "no layout class",
}


def test_the_suite_covers_every_program():
    assert set(PROGRAMS) == FUSED | set(GAPS) and len(PROGRAMS) >= 15


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_every_program_gets_a_verified_answer(name):
    row = PROGRAMS[name]
    program = row.build(**row.small)
    result = search(program, CONFIG, progress=False)
    assert result.candidates, "an answer is never empty"
    assert result.candidates[-1] == program and result.candidates[:-1] == result.searched
    for candidate in result.candidates:
        verdict = verify(program, candidate)
        assert verdict, f"{name}: {verdict.reason}"
    lines = "\n".join(result.report.lines())
    if name in FUSED:
        assert result.searched, lines
        assert result.searched[0].customized_ids, "a fused candidate leads"
    else:
        assert not result.searched
        assert f"no searched candidate: {GAPS[name]}" in lines, lines


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_every_program_builds_at_its_real_shapes(name):
    """The real shapes (hidden 4096, a 50257-wide head, 11008-wide SwiGLU) are accepted."""
    row = PROGRAMS[name]
    assert row.build(**row.real).input_types
