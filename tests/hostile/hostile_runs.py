"""Forged results and expected/ directories for the hostile harness tests (issue 15).

``write_run`` publishes records the way ``Staging.publish`` does (metadata.json naming the
records' digest), so a forged run passes the digest check and only the checker's consistency
checks (``scripts/harness/sanity.py``) can refuse it: the hard case.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from mirage.profile.timing import METHOD

REPO = Path(__file__).resolve().parents[2]
GPU = "h100"
RUN_ID = "20261206-000000-abcdef"


def record(case: str = "gqa", b: int = 1, impl: str = "mirage", us: float = 10.0,
           **over) -> dict:
    """A consistent ok record (as JSON data), with ``over`` replacing or adding fields."""
    d = {"case": case, "batch": b, "implementation": impl,
         "family": "mirage" if impl == "mirage" else "pytorch", "status": "ok", "gpu": GPU,
         "run_id": RUN_ID, "commit": "abc", "timestamp": "2026-12-06T00:00:00+0000",
         "method": METHOD, "median_us": us, "p10_us": us * 0.99, "p90_us": us * 1.01,
         "samples_us": [us * 0.99, us, us, us * 1.005, us * 1.01], "calls_per_sample": 128,
         "warm_median_us": None, "correct": True, "rel_err": 0.001, "tolerance": 0.01,
         "error": None, "detail": {}}
    d.update(over)
    return d


def untimed(case="gqa", b=1, impl="flashinfer", status="not available", **over) -> dict:
    d = record(case, b, impl, status=status, method=None, median_us=None, p10_us=None,
               p90_us=None, samples_us=[], calls_per_sample=None, correct=None, rel_err=None,
               tolerance=None, error="not importable")
    d.update(over)
    return d


def good_records() -> list[dict]:
    """gqa b=1: 2.0x over sdpa-flash; rmsnorm b=1: 1.1x over torch.compile."""
    return [record("gqa", 1, "eager", 30.0), record("gqa", 1, "sdpa-flash", 20.0),
            untimed(), record("gqa", 1, "mirage", 10.0),
            record("rmsnorm", 1, "torch.compile", 22.0), record("rmsnorm", 1, "mirage", 20.0)]


def meta(**over) -> dict:
    m = {"run_id": RUN_ID, "gpu": GPU, "complete": True, "method": METHOD, "commit": "abc",
         "started": "2026-12-06T00:00:00+0000",
         "gpu_info": {"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-1"},
         "gpu_override": None, "settings": {"samples": 5, "device": "cuda"},
         "plan": {"cases": ["gqa", "rmsnorm"], "batches": [1]}, "code": {}}
    m.update(over)
    return m


def lines_text(records) -> str:
    """records.jsonl text: dicts as JSON lines (NaN allowed: a forger's file), strings as-is."""
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def write_run(results: Path, records=None, *, text: str | None = None, directory: str = GPU,
              figure_dir: str = "", meta_over: dict | None = None,
              digest: str | None = None) -> Path:
    """results/<directory>/ holding ``records`` with a matching digest (unless ``digest``)."""
    d = Path(results) / figure_dir / directory if figure_dir else Path(results) / directory
    d.mkdir(parents=True, exist_ok=True)
    text = lines_text(good_records() if records is None else records) if text is None else text
    (d / "records.jsonl").write_text(text)
    m = meta(**(meta_over or {}))
    m.setdefault("records_sha256", digest or hashlib.sha256(text.encode()).hexdigest())
    if digest:
        m["records_sha256"] = digest
    (d / "metadata.json").write_text(json.dumps(m))
    return d


def band(case, b, low, high, gpu=GPU) -> dict:
    return {"gpu": gpu, "case": case, "batch": b, "status": "measured",
            "speedup": round((low + high) / 2, 4), "low": low, "high": high, "tolerance": 0.15,
            "launch_bound": False, "provenance": {"run_id": "ref"}}


def write_expected(dest: Path, bands=None, fig11_bands=None) -> Path:
    """expected/ with the shipped paper claims and these bands (gqa 1 and rmsnorm 1 by
    default, both holding ``good_records``' speedups)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "expected" / "paper_claims.json", dest / "paper_claims.json")
    bands = [band("gqa", 1, 1.7, 2.3), band("rmsnorm", 1, 1.0, 1.2)] if bands is None else bands
    (dest / "reference_bands.json").write_text(json.dumps({"description": "test",
                                                           "bands": bands}, indent=1))
    (dest / "fig11_bands.json").write_text(json.dumps({"description": "test",
                                                       "bands": fig11_bands or []}))
    return dest


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` by relative path, with its bytes."""
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(Path(directory).rglob("*")) if p.is_file()}
