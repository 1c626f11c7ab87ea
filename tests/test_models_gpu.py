"""GPU tier for Figure 11 (marker ``gpu``; ``pytest -m gpu tests/test_models_gpu.py``).

Each model at its real dims but 2 layers, b = 1 and 8: the Mirage variant with every piece forced
to its µGraph (the saved files, compiled and tuned as in ``make fig11``) against the PyTorch
model, then one short ``scripts.fig11`` run through the real timer. A minute or two on an H100;
the smoke test before spending a full run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from models.configs import MODELS
from models.decoder import Decoder, Variant, random_cache, relative_error
from models.mirage_variant import prepare

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MIRAGE_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.parametrize("b", [1, 8])
@pytest.mark.parametrize("name", list(MODELS))
def test_every_mugraph_piece_matches_pytorch(name, b):
    cfg = dataclasses.replace(MODELS[name], layers=2)
    model = Decoder(cfg, "cuda", seed=1)
    cache = random_cache(cfg, b, "cuda", seed=2)
    tokens = torch.randint(0, cfg.vocab, (b,), device="cuda")
    with torch.no_grad():
        base = Variant(model, cache)
        ref, x0 = base.step(tokens), base.embed(tokens)
        ref_layer = base.layer(x0)
        variant = prepare(model, cache, saved_dir=ROOT / "saved_mugraphs", policy="mugraph")
        assert all(c.chosen.startswith("mugraph") for c in variant.choices.values()), \
            variant.detail()
        assert relative_error(variant.step(tokens), ref) <= 3e-2
        assert relative_error(variant.layer(x0), ref_layer) <= 1e-2


def test_a_short_fig11_run(tmp_path):
    from scripts import fig11
    from scripts.harness import records as rec

    code = fig11.main(["--models", "ngpt-1b", "--layers", "2", "--batches", "1", "--samples", "3",
                       "--force-gpu", "--gpu", "h100", "--results", str(tmp_path)])
    assert code == 0
    _, records = rec.load_run(tmp_path / "fig11" / "h100")
    assert records and all(r.status == rec.OK for r in records), [r.describe() for r in records]
