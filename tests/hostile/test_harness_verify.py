"""Issue 15, no wrong accept: ``make verify`` (scripts/verify.py) and ``--adopt`` on forged,
contradictory or tampered runs and expected/ files. Every forged run carries a matching digest,
so only the consistency checks can refuse it; each case asserts the exit code and that the
message names the record line and the field."""

from __future__ import annotations

import json
import math

import pytest
from hostile_runs import (
    band,
    good_records,
    lines_text,
    meta,
    record,
    snapshot,
    untimed,
    write_expected,
    write_run,
)

from scripts import verify
from scripts.harness import checker
from scripts.harness.analysis import Speedup


@pytest.fixture
def env(tmp_path, monkeypatch):
    """(results, expected, run(argv) -> (code, out, err)); staleness is not under test."""
    monkeypatch.setattr(verify, "stale_reason", lambda meta, root=None: None)
    results, expected = tmp_path / "results", write_expected(tmp_path / "expected")
    results.mkdir()

    def run(*extra, capsys):
        code = verify.main(["--results", str(results), "--expected", str(expected), *extra])
        out = capsys.readouterr()
        assert "Traceback" not in out.out + out.err
        assert "internal error" not in out.err  # only the harness's own, named refusals
        return code, out.out, out.err

    return results, expected, run


def test_the_untampered_run_passes(env, capsys):
    results, expected, run = env
    write_run(results)
    code, out, err = run(capsys=capsys)
    assert code == 0 and "2 PASS" in out and err == ""


def _replace(impl: str, **over):
    """good_records with (gqa, b=1, impl) changed by ``over``."""
    rows = good_records()
    for r in rows:
        if r["case"] == "gqa" and r["implementation"] == impl:
            r.update(over)
    return rows


# (records, the words the refusal must hold: the line and the field)
CONTRADICTIONS = {
    "ok with rel_err 1.0": (_replace("mirage", rel_err=1.0), ["records.jsonl:4", "rel_err",
                                                              "above the case's tolerance"]),
    "ok with rel_err above tolerance": (_replace("sdpa-flash", rel_err=0.0101),
                                        ["records.jsonl:2", "field rel_err"]),
    "ok with rel_err NaN": (_replace("mirage", rel_err=math.nan), ["records.jsonl:4",
                                                                   "field rel_err", "finite"]),
    "ok with negative rel_err": (_replace("mirage", rel_err=-0.5), ["field rel_err"]),
    "ok without rel_err": (_replace("mirage", rel_err=None), ["field rel_err: missing"]),
    "ok with correct false": (_replace("mirage", correct=False), ["records.jsonl:4",
                                                                  "passed check"]),
    "zero median": (_replace("mirage", median_us=0.0, samples_us=[0.0] * 5),
                    ["records.jsonl:4", "field median_us"]),
    "zero baseline median": (_replace("sdpa-flash", median_us=0, samples_us=[0] * 5),
                             ["records.jsonl:2", "field median_us"]),
    "negative median": (_replace("mirage", median_us=-10.0), ["field median_us"]),
    "NaN median": (_replace("mirage", median_us=math.nan), ["field median_us", "finite"]),
    "infinite median": (_replace("mirage", median_us=math.inf), ["field median_us", "finite"]),
    "huge median": (_replace("mirage", median_us=1e400), ["field median_us", "finite"]),
    "median as text": (_replace("mirage", median_us="10"), ["field median_us",
                                                            "not a number"]),
    "NaN sample": (_replace("mirage", samples_us=[10.0, math.nan, 10.0, 10.0, 10.0]),
                   ["field samples_us[1]"]),
    "negative sample": (_replace("mirage", samples_us=[10.0, -1.0, 10.0, 10.0, 10.0]),
                        ["field samples_us", "positive"]),
    "median outside its samples": (_replace("mirage", median_us=1.0),
                                   ["records.jsonl:4", "outside its samples"]),
    "two samples for a five-sample method": (_replace("mirage", samples_us=[10.0, 10.0]),
                                             ["field samples_us", "fewer than"]),
    "no samples on an ok record": (_replace("mirage", samples_us=[]), ["fewer than"]),
    "unknown method": (_replace("mirage", method="stopwatch"), ["field method",
                                                                "unknown timing method"]),
    "another method than the run's": (_replace("mirage", method="fake"),
                                      ["field method", "but the run used"]),
    "case not in the table": (_replace("mirage", case="gemm"), ["field case", "'gemm'"]),
    "case not in the run's plan": (good_records() + [record("lora", 1, "eager", 5.0)],
                                   ["records.jsonl:7", "field case", "'lora'"]),
    "batch not in the plan": (_replace("mirage", batch=3), ["field batch", "planned"]),
    "batch zero": (_replace("mirage", batch=0), ["field batch"]),
    "batch as text": (_replace("mirage", batch="1"), ["field batch", "not an int"]),
    "batch as bool": (_replace("mirage", batch=True), ["field batch"]),
    "implementation not of the case": (_replace("eager", implementation="cublas-magic"),
                                       ["field implementation"]),
    "loosened tolerance": (_replace("mirage", tolerance=0.5, rel_err=0.4), ["field tolerance"]),
    "wrong but correct": (good_records() + [untimed(impl="triton", status="wrong",
                                                    correct=True)], ["field correct"]),
    "samples on an untimed record": (good_records() + [untimed(impl="triton",
                                                               samples_us=[1.0])],
                                     ["field samples_us", "untimed"]),
    "zero calls per sample": (_replace("mirage", calls_per_sample=0),
                              ["field calls_per_sample"]),
    "a second record of one implementation": (good_records() + [record("gqa", 1, "mirage", 9.0)],
                                              ["records.jsonl:7", "a second record"]),
    "unknown status": (_replace("mirage", status="great"), ["status 'great'"]),
    "unknown field": (_replace("mirage", speedup=99.0), ["unknown record fields"]),
    "NaN inside detail": (_replace("mirage", detail={"profile": [1.0, math.nan]}),
                          ["field detail", "NaN"]),
    "missing field": ([{k: v for k, v in r.items() if k != "implementation"}
                       for r in good_records()], ["missing field(s) implementation"]),
    "a record that is a list": (["[1, 2, 3]"], ["not a JSON object"]),
    "a record that is a number": (["42"], ["not a JSON object"]),
    "record of another GPU": (_replace("mirage", gpu="a100"), ["on a100", "on h100"]),
    "record of another run": (_replace("mirage", run_id="other"), ["record of run other"]),
}


@pytest.mark.parametrize("name", list(CONTRADICTIONS))
def test_contradictory_records_are_refused_naming_record_and_field(env, capsys, name):
    results, expected, run = env
    records, words = CONTRADICTIONS[name]
    write_run(results, records)
    code, out, err = run(capsys=capsys)
    assert code == 1, err
    assert "cannot trust" in err and "PASS" not in out and out.strip().endswith("FAILED")
    for word in words:
        assert word in err, (word, err)


@pytest.mark.parametrize("name", ["ok with rel_err 1.0", "zero median", "NaN median",
                                  "median outside its samples", "unknown method"])
def test_adopt_refuses_contradictory_records_and_writes_nothing(env, capsys, name):
    results, expected, run = env
    records, words = CONTRADICTIONS[name]
    write_run(results, records)
    before = snapshot(expected)
    code, out, err = run("--gpu", "h100", "--adopt", capsys=capsys)
    assert code == 1 and words[-1] in err and "adopted" not in out
    assert snapshot(expected) == before


# --- tampered files: a clear failing verdict, never a traceback ---------------------------------


def test_empty_records_file(env, capsys):
    results, expected, run = env
    write_run(results, text="")
    code, out, err = run(capsys=capsys)
    assert code == 1 and "records.jsonl: no records" in err


def test_truncated_json_line_with_a_matching_digest(env, capsys):
    results, expected, run = env
    text = lines_text(good_records())
    write_run(results, text=text[:-40])  # the last line cut mid-value
    code, out, err = run(capsys=capsys)
    assert code == 1 and "records.jsonl:6: not JSON" in err


def test_truncated_records_against_the_digest(env, capsys):
    results, expected, run = env
    d = write_run(results)
    (d / "records.jsonl").write_text(lines_text(good_records())[:-40])
    code, out, err = run(capsys=capsys)
    assert code == 1 and "does not match the digest" in err


def test_missing_baseline_is_missing_not_pass(env, capsys):
    results, expected, run = env
    write_run(results, [r for r in good_records() if r["implementation"] == "mirage"])
    code, out, err = run(capsys=capsys)
    assert code == 1 and "MISSING" in out and "no baseline" in out and "PASS" not in out


@pytest.mark.parametrize("tamper, words", [
    ("remove", ["incomplete run", "no metadata.json"]),
    ("not json", ["metadata.json: unreadable"]),
    ("a list", ["metadata.json: not a JSON object"]),
    ("no gpu", ["field gpu missing"]),
    ("no digest", ["field records_sha256 missing"]),
    ("incomplete", ["run not marked complete"]),
    ("bad utf-8", ["metadata.json: unreadable"]),
])
def test_tampered_metadata(env, capsys, tamper, words):
    results, expected, run = env
    d = write_run(results)
    path = d / "metadata.json"
    m = json.loads(path.read_text())
    if tamper == "remove":
        path.unlink()
    elif tamper == "not json":
        path.write_text('{"gpu": "h100", ')
    elif tamper == "a list":
        path.write_text("[]")
    elif tamper == "bad utf-8":
        path.write_bytes(b'{"gpu": "\xff\xfe"}')
    else:
        key = {"no gpu": "gpu", "no digest": "records_sha256", "incomplete": "complete"}[tamper]
        del m[key]
        path.write_text(json.dumps(m))
    code, out, err = run(capsys=capsys)
    assert code == 1 and all(w in err for w in words), err


@pytest.mark.parametrize("meta_over, words", [
    ({"method": "stopwatch"}, ["metadata.json: field method", "unknown timing method"]),
    ({"method": "fake"}, ["metadata.json: field method", "CPU test runs only"]),
    ({"gpu_info": {"name": "NVIDIA A100-SXM4-80GB"}}, ["metadata.json: field gpu",
                                                       "no override"]),
    ({"settings": {"samples": 50, "device": "cuda"}}, ["fewer than the 50"]),
    ({"plan": {"cases": ["gqa", "rmsnorm"], "batches": "1"}}, ["field plan.batches"]),
])
def test_metadata_contradicting_its_records(env, capsys, meta_over, words):
    results, expected, run = env
    write_run(results, meta_over=meta_over)
    code, out, err = run(capsys=capsys)
    assert code == 1 and all(w in err for w in words), err


def test_a_run_filed_under_another_gpu_directory(env, capsys):
    results, expected, run = env
    rows = [{**r, "gpu": "a100"} for r in good_records()]
    write_run(results, rows, meta_over={"gpu": "a100", "gpu_info": {"name": "NVIDIA A100"}})
    code, out, err = run(capsys=capsys)  # results/h100/ holding an A100 run
    assert code == 1 and "holds a run of 'a100'" in err


def test_records_file_not_utf8(env, capsys):
    results, expected, run = env
    d = write_run(results)
    (d / "records.jsonl").write_bytes(b"\xff\xfe\n")
    code, out, err = run(capsys=capsys)
    assert code == 1 and "records.jsonl: unreadable" in err


# --- expected/: a bad file is bad input (exit 2, one error line); no band is ever unsound -------


@pytest.mark.parametrize("bands, words", [
    ([band("gqa", 1, math.nan, 2.3)], ["bands[0]", "finite positive low and high"]),
    ([band("gqa", 1, 1.7, math.inf)], ["bands[0]", "finite positive"]),
    ([band("gqa", 1, 2.3, 1.7)], ["bands[0]", "low <= high"]),
    ([band("gqa", 1, -1.0, 2.0)], ["bands[0]", "finite positive"]),
    ([{**band("gqa", 1, 1.7, 2.3), "batch": "1"}], ["bands[0]", "batch '1'"]),
    ([band("gqa", 1, 1.7, 2.3), band("gqa", 1, 1.7, 2.3)], ["bands[1]", "second band"]),
    ("not a list", ["bands is not a list"]),
])
def test_unsound_bands_are_refused(env, capsys, bands, words):
    results, expected, run = env
    write_run(results)
    (expected / "reference_bands.json").write_text(json.dumps({"bands": bands}))
    code, out, err = run(capsys=capsys)
    assert code == 2 and err.startswith("error: verify: ") and err.count("\n") == 1
    assert all(w in err for w in words), err


@pytest.mark.parametrize("name", ["reference_bands.json", "paper_claims.json"])
def test_missing_expected_file(env, capsys, name):
    results, expected, run = env
    write_run(results)
    (expected / name).unlink()
    code, out, err = run(capsys=capsys)
    assert code == 2 and err.startswith("error: verify: ") and "missing" in err and name in err


def test_adopt_writes_finite_bands_only(env, capsys):
    results, expected, run = env
    write_run(results)
    code, out, err = run("--gpu", "h100", "--adopt", capsys=capsys)
    assert code == 0 and "adopted 2 bands for h100" in out
    text = (expected / "reference_bands.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    for b in json.loads(text)["bands"]:
        assert 0 < b["low"] <= b["speedup"] <= b["high"] and math.isfinite(b["high"])


def test_adopt_over_an_unsound_band_file_changes_nothing(env, capsys):
    results, expected, run = env
    write_run(results)
    (expected / "reference_bands.json").write_text(
        json.dumps({"bands": [band("lora", 1, 2.0, 1.0)]}))
    before = snapshot(expected)
    code, out, err = run("--gpu", "h100", "--adopt", capsys=capsys)
    assert code == 2 and "low <= high" in err and snapshot(expected) == before


@pytest.mark.parametrize("speedup", [math.nan, math.inf, 0.0, -2.0])
def test_propose_bands_never_from_a_non_finite_speedup(speedup):
    s = Speedup("gqa", 1, "eager", 10.0, "ok", 5.0)
    bad = {("gqa", 1): type("S", (), {"speedup": speedup, "mirage_us": 1.0,
                                      "best_baseline": "eager", "best_baseline_us": 1.0})()}
    assert checker.propose_bands(meta(), {("gqa", 1): s})[0]["low"] > 0
    with pytest.raises(checker.ExpectedError, match="no band from it"):
        checker.propose_bands(meta(), bad)


@pytest.mark.parametrize("low, high", [(math.nan, 2.0), (2.0, 1.0), (1.0, math.inf)])
def test_adopt_never_writes_an_unsound_band(tmp_path, low, high):
    expected = write_expected(tmp_path / "expected")
    before = snapshot(expected)
    with pytest.raises(checker.ExpectedError, match="not adopted"):
        checker.adopt(expected, "h100", [band("gqa", 1, low, high)])
    assert snapshot(expected) == before
