"""Records and the results directory: typed round trips, atomic publishing, and refusal of
interrupted, tampered or mixed runs."""

from __future__ import annotations

import dataclasses
import json

import pytest

from scripts.harness import records as rec
from scripts.harness.records import Record, ResultsError, Staging, load_run


def record(run_id="r1", gpu="h100", impl="eager", status=rec.OK, median=10.0, **kw):
    timed = status == rec.OK
    return Record(case="gqa", batch=1, implementation=impl, family="pytorch", status=status,
                  gpu=gpu, run_id=run_id, commit="abc", timestamp="2026-11-25T00:00:00",
                  method="m" if timed else None, median_us=median if timed else None,
                  samples_us=(median, median) if timed else (), correct=True if timed else None,
                  **kw)


def publish(root, run_id="r1", records=None, derived=("table.txt",)):
    s = Staging(root, "h100", run_id)
    for r in records or [record(run_id), record(run_id, impl="mirage", median=5.0)]:
        s.add(r)
    for name in derived:
        s.write_text(name, f"{name} of {run_id}\n")
    return s.publish({"commit": "abc"})


def test_record_round_trip_and_validation():
    r = record(detail={"note": "x"}, rel_err=1e-3, tolerance=1e-2)
    assert Record.from_json(r.to_json()) == r
    with pytest.raises(ValueError, match="ok record needs"):
        dataclasses.replace(r, median_us=None)
    with pytest.raises(ValueError, match="has no time"):
        dataclasses.replace(r, status=rec.WRONG)
    with pytest.raises(ValueError, match="status"):
        dataclasses.replace(r, status="fast")
    with pytest.raises(ValueError, match="unknown record fields"):
        Record.from_json(json.dumps({**json.loads(r.to_json()), "speedup": 9}))
    assert rec.finite(float("inf")) is None and rec.finite(float("nan")) is None


def test_publish_then_load(tmp_path):
    final = publish(tmp_path)
    meta, records = load_run(final)
    assert meta["run_id"] == "r1" and meta["records"] == 2 and meta["complete"]
    assert [r.implementation for r in records] == ["eager", "mirage"]
    assert not list(tmp_path.glob(".staging-*"))


def test_interrupted_run_publishes_nothing_and_keeps_the_old_run(tmp_path):
    publish(tmp_path, "old")
    s = Staging(tmp_path, "h100", "new")  # a new run starts ...
    s.add(record("new"))
    # ... and dies before publishing: the old run is intact and alone.
    meta, records = load_run(tmp_path / "h100")
    assert meta["run_id"] == "old" and {r.run_id for r in records} == {"old"}
    assert (s.dir / "records.jsonl.partial").exists()
    # The next run leaves it alone (a run only ever removes its own staging directory).
    nxt = Staging(tmp_path, "h100", "next")
    assert s.dir.exists() and Staging.interrupted(tmp_path, "h100") == [s.dir, nxt.dir]


def test_run_dying_while_publishing_is_untrusted(tmp_path):
    final = publish(tmp_path, "old")
    (final / rec.METADATA).unlink()  # publish removes it first, writes it last
    with pytest.raises(ResultsError, match="incomplete run"):
        load_run(final)
    with pytest.raises(ResultsError, match="no run"):
        load_run(tmp_path / "a100")


def test_tampered_or_mixed_records_are_refused(tmp_path):
    final = publish(tmp_path)
    text = (final / rec.RECORDS).read_text()
    (final / rec.RECORDS).write_text(text + record("r1", impl="x").to_json() + "\n")
    with pytest.raises(ResultsError, match="digest"):
        load_run(final)
    # A record of another run, even with a matching digest, is refused.
    mixed = text + record("r0", impl="x").to_json() + "\n"
    (final / rec.RECORDS).write_text(mixed)
    meta = json.loads((final / rec.METADATA).read_text())
    meta["records_sha256"] = rec.sha256_text(mixed)
    (final / rec.METADATA).write_text(json.dumps(meta))
    with pytest.raises(ResultsError, match="record of run r0"):
        load_run(final)


def test_staging_refuses_foreign_records(tmp_path):
    s = Staging(tmp_path, "h100", "r1")
    with pytest.raises(ValueError):
        s.add(record("r2"))
    with pytest.raises(ValueError):
        s.add(record("r1", gpu="a100"))


def test_derived_files_of_an_older_run_do_not_survive(tmp_path):
    final = publish(tmp_path, "old", derived=("table.txt", "fig7.png"))
    assert (final / "fig7.png").exists()
    publish(tmp_path, "new", derived=("table.txt",))  # this run drew no figure
    assert not (final / "fig7.png").exists()
    assert (final / "table.txt").read_text() == "table.txt of new\n"


def test_resume_continues_only_the_same_run(tmp_path):
    identity = {"gpu_uuid": "GPU-1", "code": "f1", "plan": {"cases": ["gqa"]}}
    s = Staging(tmp_path, "h100", "r1", identity, seed=42)
    s.add(record("r1"))
    with open(s.partial, "a") as f:
        f.write('{"case": "gqa", "bat')  # torn by the interruption
    assert Staging.resume(tmp_path, "h100", {**identity, "code": "f2"}) is None
    assert Staging.resume(tmp_path, "a100", identity) is None
    again = Staging.resume(tmp_path, "h100", identity)
    assert (again.run_id, again.seed, again.dir) == ("r1", 42, s.dir)
    assert again.done() == {("gqa", 1, "eager")}
    again.add(record("r1", impl="mirage", median=5.0))
    meta, records = load_run(again.publish({}))
    assert meta["run_id"] == "r1" and [r.implementation for r in records] == ["eager", "mirage"]
