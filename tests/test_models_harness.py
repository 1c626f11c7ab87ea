"""``make fig11`` on the CPU: the entry's guards, one run end to end with tiny models, the Triton
interpreter and a fake timer (records, table, figure, bands, then ``verify``), and what a run does
with a model that does not fit, an exhausted budget, an out-of-memory error and a wrong variant.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from expected_fixture import unmeasured_expected

from mirage.profile.timing import summarize
from models.configs import MODELS, tiny
from models.pieces import piece_kinds
from scripts import fig11, verify
from scripts.harness import checker, endtoend, endtoend_report
from scripts.harness import records as rec
from scripts.harness.metadata import GpuInfo, NoGpu
from scripts.write_model_mugraphs import write_piece

pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
ROOT = Path(__file__).resolve().parent.parent
H100 = GpuInfo("NVIDIA H100 80GB HBM3", "h100", "GPU-fake", 0, None, (9, 0), 50 * 2**20,
               "no NVML in tests")
TINY = {n: tiny(MODELS[n]) for n in ("llama3-8b", "ngpt-1b")}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MIRAGE_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("saved")
    for cfg in TINY.values():
        for piece in piece_kinds(cfg):
            assert write_piece(cfg, piece, 1, out, "test")[0]
    return out


def fake_loader(us: float = 100.0):
    """A timer that runs each input set once (so a broken callable still fails) and reports
    ``fn.fake_us`` or ``us`` per call."""
    def timer(fn, input_sets, calls, samples):
        for inputs in input_sets:
            fn(*inputs)
        t = getattr(fn, "fake_us", us)
        return summarize([t] * samples, calls, "fake")
    return lambda: (timer, "fake")


def run11(tmp_path, saved, *extra, loader=None, models=TINY):
    return fig11.main(["--gpu", "h100", "--batches", "1", "--device", "cpu", "--seed", "1",
                       "--results", str(tmp_path / "results"), "--saved", str(saved), *extra],
                      detect=lambda: H100, timer_loader=loader or fake_loader(), models=models)


def published(tmp_path):
    return rec.load_run(tmp_path / "results" / "fig11" / "h100")


# --- guards --------------------------------------------------------------------------------------


def test_no_gpu_says_so_in_one_line(capsys):
    def no_gpu():
        raise NoGpu("torch.cuda.is_available() is False")

    assert fig11.main(["--gpu", "h100"], detect=no_gpu) == 3
    err = capsys.readouterr().err
    assert err.startswith("fig11: no CUDA GPU visible") and err.count("\n") == 1


@pytest.mark.parametrize("args, message", [
    (["--gpu", "a100"], "FORCE_GPU=1"),
    (["--models", "llama3-70b"], "unknown model"),
    (["--variants", "tensorrt"], "variants"),
])
def test_bad_arguments_exit_2(args, message, capsys):
    assert fig11.main(args, detect=lambda: H100) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_make_fig11_without_gpu_exits_nonzero_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "scripts.fig11", "--gpu", "h100", "--results",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("fig11: no CUDA GPU visible")
    assert not any(tmp_path.iterdir())


def test_makefile_target():
    proc = subprocess.run(["make", "-n", "fig11", "GPU=h100", "RESUME=1", "QUICK=1",
                           "VPY=python", "STAMP="], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "python -m scripts.fig11 --gpu h100" in proc.stdout
    assert "--resume" in proc.stdout and "--batches 1" in proc.stdout


# --- one run end to end --------------------------------------------------------------------------


def test_fig11_publishes_and_verify_checks(tmp_path, saved, capsys):
    assert run11(tmp_path, saved) == 0
    meta, records = published(tmp_path)
    assert meta["figure"] == "fig11" and meta["method"] == "fake"
    assert "models" in meta["code"]["fingerprint_paths"]
    cases = {(r.case, r.implementation): r for r in records}
    assert len(records) == 2 * 2 * 3  # models x (step, layer) x variants
    for name in TINY.values():
        for impl in endtoend.VARIANTS:
            for case in (name.name, name.name + "/layer"):
                r = cases[(case, impl)]
                assert r.status == rec.OK and r.correct, r
    mirage = cases[("llama3-8b-tiny", "mirage")]
    assert set(mirage.detail["pieces"]) == set(piece_kinds(TINY["llama3-8b"]))
    assert mirage.rel_err is not None and mirage.rel_err <= mirage.tolerance
    out = tmp_path / "results" / "fig11" / "h100"
    assert (out / "fig11.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "table.txt").read_text()
    assert "llama3-8b-tiny" in table and "Mirage pieces" in table and "1.00x" in table
    assert json.loads((out / "proposed_bands.json").read_text())[0]["speedup"] == 1.0

    expected = unmeasured_expected(tmp_path / "expected")  # the fake run's 1.00x is no H100 band
    args = ["--results", str(tmp_path / "results"), "--expected", str(expected)]
    capsys.readouterr()
    assert verify.main(args) == 0
    text = capsys.readouterr().out
    assert "Figure 11" in text and "TO MEASURE" in text and "0.9x-1.9x" in text
    assert ">= 1.00x: met" in text
    assert verify.main([*args, "--gpu", "h100", "--adopt"]) == 0
    bands = checker.load_bands(expected, endtoend_report.BANDS_FILE)
    assert bands[("h100", "llama3-8b-tiny", 1)].status == checker.MEASURED
    assert bands[("h100", "llama3-8b", 1)].status == checker.TO_BE_MEASURED
    assert "PASS" in capsys.readouterr().out


def test_shipped_fig11_bands_cover_every_model_and_batch():
    bands = checker.load_bands(ROOT / "expected", endtoend_report.BANDS_FILE)
    want = {("h100", m, b) for m in MODELS for b in (1, 8, 16)} | {
        ("a100", m, b) for m in MODELS for b in (1, 8)}
    assert set(bands) == want
    # The H100 bands come from the adopted 2026-11-25 run; the A100 ones await a run.
    assert all(b.status == checker.MEASURED and b.provenance["run_id"]
               for k, b in bands.items() if k[0] == "h100")
    assert all(b.status == checker.TO_BE_MEASURED for k, b in bands.items() if k[0] == "a100")
    claims = [c for c in checker.load_claims(ROOT / "expected") if c.figure == "fig11"]
    assert claims and claims[0].low == 0.9 and claims[0].high == 1.9


# --- what does not fit ---------------------------------------------------------------------------


def test_a_model_too_large_is_skipped_with_numbers(tmp_path, saved, monkeypatch):
    monkeypatch.setattr(endtoend, "_free_bytes", lambda device: 1e6)
    assert run11(tmp_path, saved, "--models", "ngpt-1b") == 0
    _, records = published(tmp_path)
    assert len(records) == 6 and all(r.status == rec.NOT_AVAILABLE for r in records)
    assert records[0].error.startswith("skipped: needs") and "GiB free" in records[0].error


def test_an_exhausted_budget_skips_and_still_publishes(tmp_path, saved):
    assert run11(tmp_path, saved, "--budget-s", "1e-9") == 0
    _, records = published(tmp_path)
    assert records and all(r.status == rec.NOT_AVAILABLE and "time budget" in r.error
                           for r in records)


def test_out_of_memory_while_building_is_a_skip(tmp_path, saved, monkeypatch):
    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(endtoend, "prepare", oom)
    assert run11(tmp_path, saved, "--models", "llama3-8b") == 0
    _, records = published(tmp_path)
    by = {(r.case, r.implementation): r for r in records}
    assert by[("llama3-8b-tiny", "mirage")].status == rec.NOT_AVAILABLE
    assert "skipped: out of memory" in by[("llama3-8b-tiny", "mirage")].error
    assert by[("llama3-8b-tiny", "pytorch")].status == rec.OK  # the run went on


def test_a_wrong_variant_is_reported_wrong_and_fails_verify(tmp_path, saved, monkeypatch,
                                                           capsys):
    real = endtoend.prepare

    def broken(*args, **kwargs):
        variant = real(*args, **kwargs)
        variant.head_fn = lambda x, *rest: torch.zeros(x.shape[0], variant.cfg.vocab,
                                                       dtype=torch.float16)
        return variant

    monkeypatch.setattr(endtoend, "prepare", broken)
    assert run11(tmp_path, saved, "--models", "llama3-8b") == 0
    _, records = published(tmp_path)
    step = next(r for r in records if r.case == "llama3-8b-tiny" and r.implementation == "mirage")
    assert step.status == rec.WRONG and step.median_us is None and "against pytorch" in step.error
    capsys.readouterr()
    assert verify.main(["--results", str(tmp_path / "results"), "--expected",
                        str(ROOT / "expected")]) == 1
    assert "WRONG" in capsys.readouterr().out


def test_a_failing_model_loses_only_itself(tmp_path, saved, monkeypatch):
    real = endtoend.random_cache

    def cache(cfg, *args, **kwargs):
        if cfg.name.startswith("llama"):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(endtoend, "random_cache", cache)
    assert run11(tmp_path, saved, "--variants", "pytorch,mirage") == 0
    _, records = published(tmp_path)
    assert len(records) == len({(r.case, r.batch, r.implementation) for r in records}) == 8
    for r in records:
        if r.case.startswith("llama"):
            assert r.status == rec.ERROR and "illegal memory access" in r.error
        else:
            assert r.status == rec.OK


def test_the_faster_sdpa_form_is_the_baseline(tmp_path, saved):
    def loader():
        def timer(fn, input_sets, calls, samples):
            for inputs in input_sets:
                fn(*inputs)
            form = getattr(getattr(fn, "__self__", None), "attention_form", None)
            us = {"rows": 30.0, "heads": 20.0}.get(form, 100.0)
            return summarize([us] * samples, calls, "fake")
        return timer, "fake"

    assert run11(tmp_path, saved, "--models", "llama3-8b", "--variants", "pytorch",
                 loader=loader) == 0
    meta, records = published(tmp_path)
    step = next(r for r in records if r.case == "llama3-8b-tiny")
    assert step.detail["attention_form"] == "heads"
    assert step.detail["attention_forms_us"] == {"rows": 30.0, "heads": 20.0}
    table = (tmp_path / "results" / "fig11" / "h100" / "table.txt").read_text()
    assert "llama3-8b-tiny b=1: heads (rows 30.0 us, heads 20.0 us)" in table
