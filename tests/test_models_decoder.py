"""The Figure 11 decoders on the CPU: tiny twins of the four models (hidden 64, 2 layers, KV 32).

The PyTorch model against the Mirage variant run through Triton's interpreter (one decode step
and layer 0), its fallbacks (missing, stale and wrong µGraphs, a slower µGraph), the
torch.compile variant traced by Dynamo (eager backend: no graph breaks), and the pieces a
decode step relies on (the cache write, RoPE with a folded scale, the configs' sizes).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mirage.ir import save
from mirage.workloads import models as mw
from models.configs import MODELS, tiny
from models.decoder import (
    CompiledVariant,
    Decoder,
    Rope,
    Variant,
    random_cache,
    relative_error,
    rms_norm,
)
from models.mirage_variant import TORCH, prepare
from models.pieces import piece_kinds, piece_shapes, saved_path
from scripts.write_model_mugraphs import write_piece

pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
TINY = {name: tiny(cfg) for name, cfg in MODELS.items()}
BATCHES = (1, 3)
STEP_TOL, LAYER_TOL = 3e-2, 1e-2  # as scripts/harness/endtoend.py


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """µGraph files for the tiny models, written by the same code as the shipped ones."""
    out = tmp_path_factory.mktemp("saved")
    for cfg in TINY.values():
        for b in BATCHES:
            for piece in piece_kinds(cfg):
                ok, summary = write_piece(cfg, piece, b, out, "test")
                assert ok, summary
    return out


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MIRAGE_CACHE_DIR", str(tmp_path / "cache"))


def setup(name: str, b: int):
    cfg = TINY[name]
    model = Decoder(cfg, "cpu", seed=5)
    cache = random_cache(cfg, b, "cpu", seed=6)
    tokens = torch.randint(0, cfg.vocab, (b,), generator=torch.Generator().manual_seed(7))
    return model, cache, tokens


def reference(model, cache, tokens):
    base = Variant(model, cache)
    with torch.no_grad():
        x0 = base.embed(tokens)
        return base.step(tokens), x0, base.layer(x0)


@pytest.mark.parametrize("b", BATCHES)
@pytest.mark.parametrize("name", list(TINY))
def test_mirage_variant_matches_pytorch(name, b, saved):
    model, cache, tokens = setup(name, b)
    ref_step, x0, ref_layer = reference(model, cache, tokens)
    assert torch.isfinite(ref_step).all() and ref_step.shape == (b, TINY[name].vocab)
    variant = prepare(model, cache, saved_dir=saved, mode="interpret", policy="mugraph")
    assert all(c.chosen == "mugraph #0" for c in variant.choices.values()), variant.detail()
    with torch.no_grad():
        assert relative_error(variant.step(tokens), ref_step) <= STEP_TOL
        assert relative_error(variant.layer(x0), ref_layer) <= LAYER_TOL


@pytest.mark.parametrize("name", list(TINY))
def test_torch_policy_is_the_baseline(name, saved):
    model, cache, tokens = setup(name, 1)
    ref_step, _, _ = reference(model, cache, tokens)
    variant = prepare(model, cache, saved_dir=saved, mode="interpret", policy="torch")
    assert all(c.chosen == TORCH for c in variant.choices.values())
    with torch.no_grad():  # only the folded q scale (RoPE tables) differs in rounding
        assert relative_error(variant.step(tokens), ref_step) <= 5e-3


def test_missing_and_stale_files_fall_back(tmp_path, saved):
    name = "llama3-8b"
    cfg = TINY[name]
    model, cache, tokens = setup(name, 1)
    ref_step, _, _ = reference(model, cache, tokens)
    # attn_in: missing; mlp: a file written for other shapes (b = 3)
    for piece in piece_kinds(cfg):
        if piece not in ("attn_in", "mlp"):
            src = saved_path(saved, cfg, piece, 1)
            dst = saved_path(tmp_path, cfg, piece, 1)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(src.read_text())
    saved_path(tmp_path, cfg, "mlp", 1).write_text(saved_path(saved, cfg, "mlp", 3).read_text())
    variant = prepare(model, cache, saved_dir=tmp_path, mode="interpret", policy="mugraph")
    c = variant.choices
    assert c["attn_in"].chosen == TORCH and "no saved µGraph" in c["attn_in"].reason
    assert c["mlp"].chosen == TORCH and "stale" in c["mlp"].reason
    assert c["attend"].chosen == "mugraph #0"
    with torch.no_grad():
        assert relative_error(variant.step(tokens), ref_step) <= STEP_TOL


def test_a_wrong_mugraph_is_never_chosen(tmp_path, saved):
    """Chameleon's attention file holding a µGraph without the q-norm (same inputs, wrong)."""
    name = "chameleon-7b"
    cfg = TINY[name]
    model, cache, tokens = setup(name, 1)
    for piece in piece_kinds(cfg):
        src, dst = saved_path(saved, cfg, piece, 1), saved_path(tmp_path, cfg, piece, 1)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(src.read_text())
    shapes = piece_shapes(cfg, 1)["attend"]
    save(saved_path(tmp_path, cfg, "attend", 1), [mw.attention_graph(shapes)],
         program=mw.attention_qnorm_program(shapes), meta={"note": "planted"})
    variant = prepare(model, cache, saved_dir=tmp_path, mode="interpret", policy="mugraph")
    attend = variant.choices["attend"]
    assert attend.chosen == TORCH and "wrong" in attend.rejected["mugraph #0"]
    assert attend.reason == "no correct µGraph"


def test_fastest_policy_keeps_the_baseline_when_it_is_faster(saved):
    model, cache, _ = setup("ngpt-1b", 1)

    def timer(fn, sets):  # the baseline pieces are bound methods, the µGraphs closures
        return 1.0 if hasattr(fn, "__self__") else 2.0

    variant = prepare(model, cache, saved_dir=saved, mode="interpret", policy="fastest",
                      timer=timer)
    for c in variant.choices.values():
        assert c.chosen == TORCH and c.reason == "the baseline piece was faster"
        assert c.timings_us == {"mugraph #0": 2.0, TORCH: 1.0}
    json.dumps(variant.detail())  # goes into the records as is

    variant = prepare(model, cache, saved_dir=saved, mode="interpret", policy="fastest",
                      timer=lambda fn, sets: 2.0 if hasattr(fn, "__self__") else 1.0)
    assert all(c.chosen == "mugraph #0" for c in variant.choices.values())


@pytest.mark.parametrize("name", ["llama3-8b", "gpt3-7b-lora"])
def test_compiled_variant_traces_without_graph_breaks(name):
    model, cache, tokens = setup(name, 2)
    ref_step, x0, ref_layer = reference(model, cache, tokens)
    torch._dynamo.reset()
    variant = CompiledVariant(model, cache, backend="eager")  # fullgraph=True: breaks raise
    with torch.no_grad():
        assert relative_error(variant.step(tokens), ref_step) == 0.0
        assert relative_error(variant.layer(x0), ref_layer) == 0.0


def test_both_sdpa_forms_compute_the_same_attention(saved):
    """The baseline hands GQA to SDPA as query rows per KV head or as heads with enable_gqa
    (the harness keeps the faster); the Mirage variant's fallback uses the same form."""
    model, cache, tokens = setup("gpt3-7b-lora", 3)
    ref_step, x0, _ = reference(model, cache, tokens)
    model.attention_form = "heads"
    with torch.no_grad():
        assert relative_error(Variant(model, cache).step(tokens), ref_step) <= 1e-3
    variant = prepare(model, cache, saved_dir=saved, mode="interpret", policy="torch")
    assert variant.pieces.attention_form == "heads"
    with torch.no_grad():
        assert relative_error(variant.step(tokens), ref_step) <= 5e-3


def test_decode_step_writes_its_kv_into_the_last_slot():
    model, cache, tokens = setup("chameleon-7b", 2)
    before = cache.k[0].clone()
    Variant(model, cache).step(tokens)
    changed = (cache.k[0] != before).any(dim=-1)  # (b, kv_heads, kv_len)
    assert changed[:, :, -1].all() and not changed[:, :, :-1].any()
    # QK-norm models cache normalized keys
    written = cache.k[0][:, :, -1].float()
    assert torch.allclose(written.pow(2).mean(-1), torch.ones(()), atol=2e-2)


def test_rope_with_a_folded_query_scale():
    cfg = TINY["llama3-8b"]
    x = torch.randn(2, cfg.heads + cfg.kv_heads, cfg.head_dim).half()
    plain, scaled = Rope.at(cfg, 31, "cpu"), Rope.at(cfg, 31, "cpu", q_scale=0.25)
    a, b = plain(x).float(), scaled(x).float()
    assert torch.allclose(b[:, :cfg.heads], 0.25 * a[:, :cfg.heads], atol=1e-3)
    assert torch.equal(b[:, cfg.heads:], a[:, cfg.heads:])
    # RoPE preserves each pair's norm, so it commutes with the head-dim RMS norm
    assert torch.allclose(rms_norm(plain(x)).float(), plain(rms_norm(x)).float(), atol=1e-2)


def test_model_sizes():
    llama = MODELS["llama3-8b"]
    assert 8.0e9 < llama.params() < 8.1e9
    # PAPER.md: 8 kv heads x 128 x 4096 x 2 x 32 layers x 2 bytes = 0.5 GiB per sequence
    assert llama.kv_bytes(1) == 8 * 128 * 4096 * 2 * 32 * 2
    assert MODELS["ngpt-1b"].params() == pytest.approx(1.06e9, rel=0.01)
    assert MODELS["chameleon-7b"].group == 1 and llama.group == 4
    for m in MODELS.values():  # every model and its Mirage copies fit an 80 GB card at b=16
        assert m.weight_bytes() + m.folded_bytes() + m.kv_bytes(16) < 70 * 2**30


def test_tune_quick_plumbing(monkeypatch):
    """``tune_quick`` (GPU only) on interpreted kernels: every kernel of every graph is warmed
    up with each of its configs and given the one ``pick`` chose."""
    from mirage.runtime import compile as compile_graph
    from mirage.runtime import tuning
    from mirage.runtime.tuning import Config
    from models.mirage_variant import quick_configs, tune_quick

    graphs = [compile_graph(mw.build(kind, shapes)[1][0], mode="interpret") for kind, shapes in
              (("attention", {"Q": (4, 2, 16), "K": (4, 64, 16), "V": (4, 64, 16)}),
               ("ntrans", {"H": (2, 32), "X": (2, 32), "alpha": (2, 32)}))]
    warmed, picked = [], []
    monkeypatch.setattr(tuning, "precompile", lambda work: warmed.extend(f() for f in work))

    def pick(launch, configs):
        launch(configs[-1])  # runs the kernel on the operands tune_quick built
        picked.append(configs)
        return configs[-1], {}

    monkeypatch.setattr(tuning, "pick", pick)
    tune_quick(graphs)
    launches = [launch for g in graphs for launch in g.launches.values()]
    assert len(launches) == 3 and len(picked) == 3
    assert len(warmed) == sum(len(quick_configs(x.spec)) for x in launches)
    for launch, configs in zip(launches, picked, strict=True):
        assert launch.config == configs[-1] and configs[0] == tuning.heuristic(launch.spec)
        assert len(configs) <= 4 and len(set(configs)) == len(configs)
        if launch.spec.forloop_range > 1:
            assert Config(2, 4) in configs
