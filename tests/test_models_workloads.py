"""The Figure 11 subprograms (``mirage.workloads.models``) and their saved µGraphs.

* every kind verifies against its input program at reduced shapes, and planted bugs of the
  kind a model would suffer (a missing q-norm, a norm on one branch only, a lost RMSNorm in front
  of a LoRA projection) are rejected;
* every kind runs in Triton's CPU interpreter (fp16, fp32) and matches the program's float
  meaning;
* the files in saved_mugraphs/models/ are there for every model, piece and batch, hold the
  program at the model's shapes and candidates valid on both GPUs;
* AOT tier: the kernels generated at the real model shapes compile for sm_90, one per distinct
  kernel source.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mirage.codegen import generate
from mirage.codegen.load import aot_compile, import_source, write_source
from mirage.ir import A100, H100, check, load
from mirage.runtime import compile as compile_graph
from mirage.semantics.meanings import FloatSemantics
from mirage.semantics.walker import evaluate
from mirage.verify import verify
from mirage.workloads import models as mw
from models.configs import MODELS
from models.pieces import piece_kinds, piece_shapes, saved_path

ROOT = Path(__file__).resolve().parent.parent
AOT = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1",
                         reason="AOT compile needs triton imported without TRITON_INTERPRET")

# Reduced shapes with several blocks and loop iterations (the builders derive tiles from them).
SMALL = {
    "norm_matmul": {"X": (3, 64), "W": (64, 48)},
    "norm_lora": {"X": (3, 64), "W": (64, 48), "A": (64, 4), "B": (4, 48)},
    "lora": {"X": (3, 64), "W": (64, 48), "A": (64, 4), "B": (4, 48)},
    "norm_gated_mlp": {"X": (3, 64), "W1": (64, 48), "W2": (64, 48)},
    "gated_mlp": {"X": (3, 64), "W1": (64, 48), "W2": (64, 48)},
    "attention": {"Q": (4, 4, 16), "K": (4, 64, 16), "V": (4, 64, 16)},
    "attention_qnorm": {"Q": (6, 1, 16), "K": (6, 64, 16), "V": (6, 64, 16)},
    "ntrans": {"H": (3, 64), "X": (3, 64), "alpha": (3, 64)},
}
TORCH = {"fp16": torch.float16, "fp32": torch.float32}
TOL = {"fp16": 1e-2, "fp32": 1e-5}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MIRAGE_CACHE_DIR", str(tmp_path / "cache"))


def test_every_kind_has_small_shapes():
    assert set(SMALL) == set(mw.KINDS)


@pytest.mark.parametrize("kind", sorted(mw.KINDS))
def test_kind_verifies(kind):
    program, graphs = mw.build(kind, SMALL[kind])
    for g in graphs:
        assert g.customized_ids
        assert verify(program, g), kind


def test_single_split_attention_verifies():
    for kind in ("attention", "attention_qnorm"):
        program, (graph,) = mw.build(kind, SMALL[kind], splits=1)
        assert len(graph.customized_ids) == 1
        assert verify(program, graph)


@pytest.mark.parametrize("program_kind, wrong_graph", [
    ("attention_qnorm", mw.attention_graph),  # q-norm forgotten
    ("attention", mw.attention_qnorm_graph),  # q normalized where it must not be
    ("norm_gated_mlp", mw.gated_mlp_graph),  # the RMSNorm dropped
    ("norm_lora", mw.lora_graph),  # the RMSNorm in front of a LoRA projection dropped
])
def test_planted_bugs_are_rejected(program_kind, wrong_graph):
    shapes = SMALL[program_kind]
    program = mw.KINDS[program_kind].program(shapes)
    assert not verify(program, wrong_graph(shapes))


def test_norm_on_one_branch_only_is_rejected():
    """silu(rms_norm(X) W1) * (X W2): the gated MLP with the norm on the gate only."""
    from mirage.api import new_kernel_graph
    from mirage.workloads.programs import inputs_of

    g = new_kernel_graph()
    x, w1, w2 = inputs_of(g, SMALL["norm_gated_mlp"], "fp16")
    g.mark_output(g.mul(g.silu(g.matmul(g.rms_norm(x), w1)), g.matmul(x, w2)))
    half_normed = g.kernel_graph()
    (good,) = mw.build("norm_gated_mlp", SMALL["norm_gated_mlp"])[1]
    assert not verify(half_normed, good)


@pytest.mark.parametrize("dtype", ["fp16", "fp32"])
@pytest.mark.parametrize("kind", sorted(mw.KINDS))
def test_kind_interpreter(kind, dtype):
    program, (graph,) = mw.build(kind, SMALL[kind], dtype)
    rng = np.random.default_rng(sorted(mw.KINDS).index(kind))
    xs = [torch.from_numpy(0.5 * rng.standard_normal(t.shape).astype(np.float32)).to(TORCH[dtype])
          for t in graph.input_types]
    (ref,) = evaluate(program, [x.float().numpy() for x in xs], FloatSemantics(np.float32))
    out = torch.full(ref.shape, float("nan"), dtype=TORCH[dtype])
    with np.errstate(all="ignore"):
        compile_graph(graph, mode="interpret")(*xs, out=[out])
    got = out.float().numpy()
    assert np.isfinite(got).all(), "unwritten output elements"
    err = np.linalg.norm(got - ref) / np.linalg.norm(ref)
    assert err <= TOL[dtype], f"{kind} {dtype}: relative L2 error {err:.2e}"


def test_tiles_derive_from_shapes():
    # a GEMV-like kernel gets at least half a block per SM with the widest tile that allows it
    assert mw.column_tile(6144) == 64 and mw.column_tile(4096) == 32
    assert mw.column_tile(128256) == 64 and mw.column_tile(50304) == 64
    assert mw.column_tile(40) == 40  # nothing divides: one tile
    assert mw.reduction_tile(4096) == 128 and mw.reduction_tile(64) == 16
    # decode attention: about two blocks per SM, at least 64 keys per split
    assert mw.kv_splits(8, 4096) == 32  # LLaMA b=1: 8 KV heads
    assert mw.kv_splits(128, 4096) == 2
    assert mw.kv_splits(512, 4096) == 1  # Chameleon b=16: one kernel
    assert mw.kv_splits(4, 32) == 2  # small shapes still split


# --- the saved files ----------------------------------------------------------------------------


CASES = [(m, p, b) for m in MODELS.values() for b in (1, 8, 16) for p in piece_kinds(m)]


@pytest.mark.parametrize("cfg, piece, b", CASES, ids=lambda x: getattr(x, "name", str(x)))
def test_saved_file_matches_the_model(cfg, piece, b):
    path = saved_path(ROOT / "saved_mugraphs", cfg, piece, b)
    mf = load(path)
    kind = piece_kinds(cfg)[piece]
    shapes = piece_shapes(cfg, b)[piece]
    assert mf.program == mw.KINDS[kind].program(shapes), f"{path} is stale: regenerate it"
    assert mf.graphs and all(g.input_types == mf.program.input_types for g in mf.graphs)
    for g in mf.graphs:
        assert not check(g, H100) and not check(g, A100)
    assert mf.meta["command"].startswith("python -m scripts.write_model_mugraphs")
    assert "passed" in mf.meta["verified"]


def test_no_stray_saved_files():
    expected = {saved_path(ROOT / "saved_mugraphs", m, p, b).name for m, p, b in CASES}
    assert {p.name for p in (ROOT / "saved_mugraphs" / "models").glob("*.json")} == expected


def test_gqa_decode_shape():
    """LLaMA's attention at decode: per KV head its group of 4 query heads are the query rows,
    and each of the b sequences has its own cache: b * 8 heads."""
    shapes = piece_shapes(MODELS["llama3-8b"], 8)["attend"]
    assert shapes == {"Q": (64, 4, 128), "K": (64, 4096, 128), "V": (64, 4096, 128)}
    assert piece_shapes(MODELS["chameleon-7b"], 1)["attend"]["Q"] == (32, 1, 128)


# --- AOT at the real shapes ---------------------------------------------------------------------


def _aot_cases():
    """One (model, piece, b) per kind (b = 8, plus the one-kernel attention at b = 16)."""
    seen, out = set(), []
    for cfg in MODELS.values():
        for piece, kind in piece_kinds(cfg).items():
            if kind not in seen and piece != "head":
                seen.add(kind)
                out.append((cfg.name, piece, 8))
    out.append(("chameleon-7b", "attend", 16))
    return out


@AOT
@pytest.mark.parametrize("model, piece, b", _aot_cases())
def test_model_kernels_aot(model, piece, b, tmp_path):
    mf = load(saved_path(ROOT / "saved_mugraphs", MODELS[model], piece, b))
    for graph in mf.graphs:
        module = generate(graph)
        mod = import_source(write_source(module, tmp_path))
        for spec in module.kernels:
            kernel = aot_compile(mod, spec, 90)
            assert kernel.asm["cubin"], spec.name
            assert kernel.metadata.shared <= 227 * 1024
