"""What reads records: speedups, the checker (pass, miss, missing case), the text table and the
Figure 7 plot, all from a fixture; and the shipped expected/ files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from expected_fixture import unmeasured_bands_text

from scripts.harness import checker, plot, report
from scripts.harness import records as rec
from scripts.harness.analysis import speedups
from scripts.harness.records import Record

EXPECTED = Path(__file__).resolve().parent.parent / "expected"


def r(case, b, impl, status=rec.OK, us=None, error=None, detail=None):
    return Record(case=case, batch=b, implementation=impl, family=impl, status=status,
                  gpu="h100", run_id="r1", commit="abc", timestamp="t",
                  method="cudagraph-events-rotated" if status == rec.OK else None,
                  median_us=us, samples_us=(us,) * 3 if us else (),
                  correct={rec.OK: True, rec.WRONG: False}.get(status), error=error,
                  detail=detail or {})


FIXTURE = [
    r("gqa", 1, "eager", us=30.0), r("gqa", 1, "sdpa-flash", us=20.0),
    r("gqa", 1, "fast-but-wrong", rec.WRONG, error="rel_err 0.9 > tolerance 0.01"),
    r("gqa", 1, "flashinfer", rec.NOT_AVAILABLE, error="flashinfer not importable"),
    r("gqa", 1, "mirage", us=10.0, detail={"index": 3, "candidates": 7, "wrong": 2,
                                           "failed": 1, "cached": False}),
    r("gqa", 8, "eager", us=60.0), r("gqa", 8, "sdpa-flash", us=40.0),
    r("gqa", 8, "mirage", rec.WRONG, error="no candidate passed"),
    r("rmsnorm", 1, "torch.compile", us=22.0), r("rmsnorm", 1, "mirage", us=20.0),
    r("ntrans", 1, "eager", us=5.0),
    r("ntrans", 1, "mirage", rec.NOT_AVAILABLE, error="no saved µGraphs"),
]


def band(case, b, low, high, gpu="h100"):
    return checker.Band(gpu, case, b, checker.MEASURED, (low + high) / 2, low, high, 0.15)


def test_speedups_count_only_correct_timed_implementations():
    ups = speedups(FIXTURE)
    assert ups[("gqa", 1)].best_baseline == "sdpa-flash"  # not the wrong one
    assert ups[("gqa", 1)].speedup == pytest.approx(2.0)
    assert ups[("gqa", 8)].speedup is None and ups[("gqa", 8)].mirage_status == rec.WRONG
    assert ups[("rmsnorm", 1)].speedup == pytest.approx(1.1)
    assert ups[("ntrans", 1)].speedup is None


def test_checker_pass_miss_missing_and_unmeasured():
    ups = speedups(FIXTURE)
    bands = {("h100", "gqa", 1): band("gqa", 1, 1.7, 2.3),        # 2.0: pass
             ("h100", "rmsnorm", 1): band("rmsnorm", 1, 1.6, 2.2),  # 1.1: miss
             ("h100", "lora", 1): band("lora", 1, 1.0, 2.0),        # not in the run: missing
             ("h100", "ntrans", 1): checker.Band("h100", "ntrans", 1, checker.TO_BE_MEASURED),
             ("a100", "gqa", 1): band("gqa", 1, 9.0, 9.5, gpu="a100")}  # other GPU: ignored
    rows = {(x.case, x.batch): x for x in checker.check("h100", ups, bands, [])}
    assert rows[("gqa", 1)].verdict == checker.PASS
    assert rows[("rmsnorm", 1)].verdict == checker.MISS
    assert rows[("lora", 1)].verdict == checker.MISSING
    assert rows[("ntrans", 1)].verdict == checker.TO_MEASURE
    assert rows[("gqa", 8)].verdict == checker.WRONG  # a wrong Mirage fails even without a band
    assert checker.failed(list(rows.values()))
    passing = [rows[("gqa", 1)], rows[("ntrans", 1)]]
    assert not checker.failed(passing)
    text = checker.render(list(rows.values()))
    for word in ("case", "measured", "expected band", "paper claim", "verdict", "MISS",
                 "MISSING", "2.00x (10.0 vs 20.0 us sdpa-flash)"):
        assert word in text


def test_a_band_for_a_batch_size_the_run_did_not_plan_is_not_run_not_missing():
    """QUICK=1 plans b = 1 only: the b = 16 band is NOT RUN, which does not fail; a band for a
    planned batch size with no measurement still does (MISSING)."""
    ups = speedups(FIXTURE)
    bands = {("h100", "gqa", 16): band("gqa", 16, 1.0, 2.0),
             ("h100", "lora", 1): band("lora", 1, 1.0, 2.0)}
    rows = {(x.case, x.batch): x for x in checker.check("h100", ups, bands, [], [1, 8])}
    assert rows[("gqa", 16)].verdict == checker.NOT_RUN
    assert rows[("lora", 1)].verdict == checker.MISSING
    assert not checker.failed([rows[("gqa", 16)]])


def test_claims_are_shown_for_their_gpu_only():
    claims = checker.load_claims(EXPECTED)
    rows = checker.check("h100", speedups(FIXTURE), {}, claims)
    by_case = {x.case: x for x in rows}
    assert [c.text for c in by_case["rmsnorm"].claims] == ["1.9x"]  # not A100's 1.5x
    assert [c.text for c in by_case["gqa"].claims] == ["up to 2.2x"]
    assert all(x.verdict in (checker.NO_BAND, checker.WRONG) for x in rows)


def test_shipped_expected_holds_claims_and_no_invented_bands():
    claims = checker.load_claims(EXPECTED)
    assert {(c.case, c.gpu, c.text) for c in claims if c.figure == "fig7"} >= {
        ("rmsnorm", "a100", "1.5x"), ("rmsnorm", "h100", "1.9x"), ("gatedmlp", "a100", "1.5x"),
        ("gatedmlp", "h100", "2.7-3.3x"), ("gqa", None, "up to 2.2x"),
        ("qknorm", None, "up to 1.4x"), ("lora", None, "1.1-2.4x")}
    assert all(c.source for c in claims)
    bands = checker.load_bands(EXPECTED)
    assert {(g, b) for g, _, b in bands} == {("a100", 1), ("a100", 8), ("h100", 1), ("h100", 8),
                                             ("h100", 16)}
    for key, b in bands.items():  # a measured band must say where it came from
        if b.status == checker.MEASURED:
            assert b.provenance and b.provenance.get("run_id") and b.provenance.get("commit"), key


def test_adopt_replaces_only_the_measured_gpu(tmp_path):
    (tmp_path / checker.BANDS_FILE).write_text(unmeasured_bands_text(checker.BANDS_FILE))
    meta = {"gpu": "h100", "run_id": "r1", "commit": "abc", "started": "t",
            "gpu_info": {"name": "NVIDIA H100"}}
    proposed = checker.propose_bands(meta, speedups(FIXTURE))
    assert {(p["case"], p["batch"]) for p in proposed} == {("gqa", 1), ("rmsnorm", 1)}
    gqa = next(p for p in proposed if p["case"] == "gqa")
    assert gqa["launch_bound"] and gqa["tolerance"] == checker.LAUNCH_BOUND_TOLERANCE
    (tmp_path / checker.BANDS_FILE).write_text(checker.adopt(tmp_path, "h100", proposed))
    bands = checker.load_bands(tmp_path)
    assert bands[("h100", "gqa", 1)].low == pytest.approx(2.0 * 0.65)
    assert bands[("h100", "rmsnorm", 1)].high == pytest.approx(1.1 * 1.15)
    assert bands[("a100", "gqa", 1)].status == checker.TO_BE_MEASURED
    assert bands[("h100", "gqa", 8)].status == checker.TO_BE_MEASURED


def test_malformed_expected_is_an_error(tmp_path):
    (tmp_path / checker.BANDS_FILE).write_text(json.dumps({"bands": [
        {"gpu": "h100", "case": "gqa", "batch": 1, "status": "measured", "low": 2, "high": 1}]}))
    with pytest.raises(checker.ExpectedError, match="low <= high"):
        checker.load_bands(tmp_path)
    (tmp_path / checker.BANDS_FILE).write_text(json.dumps({"bands": [{"gpu": "h100"}]}))
    with pytest.raises(checker.ExpectedError, match="bands\\[0\\]"):
        checker.load_bands(tmp_path)


def test_table_from_fixture():
    text = report.table({"gpu": "h100", "run_id": "r1", "commit": "abc"}, FIXTURE)
    header = next(line for line in text.splitlines() if line.startswith("| case"))
    assert "flashinfer" not in header  # never available: listed below instead
    assert "fast-but-wrong" in header and "WRONG" in text
    assert "flashinfer: flashinfer not importable" in text
    assert "candidate #3 of 7 (2 wrong, 1 failed)" in text
    assert "Upstream quirks not copied" in text and "issue 658" in text
    assert "| gqa     | 1   | 30.0    | 20.0" in text and "2.00x" in text


def test_plot_renders_from_fixture(tmp_path):
    png = plot.render(FIXTURE, "fixture")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    import matplotlib.image

    path = tmp_path / "fig7.png"
    path.write_bytes(png)
    height, width = matplotlib.image.imread(path).shape[:2]
    assert width > 1000 and height > 300
