"""Issue 15, nothing lost: the results directory's lock (one writer at a time, a named holder, a
stale lock taken over), staging directories that only their own run removes, atomic writers,
and Ctrl-C ending in one line with exit 130."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hostile_runs import snapshot, write_expected, write_run

from scripts import fig7, fig11, report, run_all, table5, verify
from scripts.harness import records as rec
from scripts.harness import run as run_module
from scripts.harness.lock import LockHeld, RunLock, lock_path
from scripts.harness.metadata import GpuInfo
from scripts.harness.records import Record, Staging, atomic_write_bytes

H100 = GpuInfo("NVIDIA H100 80GB HBM3", "h100", "GPU-1234", 0, None, (9, 0), 50 * 2**20)


def dead_pid() -> int:
    """A pid no process can have (above the kernel's limit)."""
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    except OSError:
        return 2**22 + 1


def plant_lock(directory: Path, pid: int, host: str | None = None) -> Path:
    path = lock_path(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(),
                                "started": "2026-12-06T10:00:00+0000",
                                "command": ["python -m scripts.fig7", "--gpu", "h100"],
                                "token": "theirs"}))
    return path


def never(*a, **k):
    raise AssertionError("must not get this far")


# --- the lock itself ----------------------------------------------------------------------------


def test_lock_file_names_its_holder_and_goes_away(tmp_path):
    with RunLock.for_dir(tmp_path / "h100", ["make", "hopper"]) as lock:
        info = json.loads((tmp_path / ".lock-h100").read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
        assert info["command"] == ["make", "hopper"] and info["started"]
        assert lock.held
    assert not (tmp_path / ".lock-h100").exists()


def test_a_second_writer_is_refused_with_the_holder_named(tmp_path):
    with RunLock.for_dir(tmp_path / "h100", ["make", "hopper"]):
        with pytest.raises(LockHeld) as e:
            RunLock.for_dir(tmp_path / "h100", ["make", "fig7"]).acquire()
    msg = str(e.value)
    assert f"pid {os.getpid()} on {socket.gethostname()}" in msg and "make hopper" in msg


def test_a_stale_lock_is_taken_over_with_a_notice(tmp_path):
    plant_lock(tmp_path / "h100", dead_pid())
    notices = []
    with RunLock.for_dir(tmp_path / "h100", ["me"], notice=notices.append):
        assert json.loads((tmp_path / ".lock-h100").read_text())["pid"] == os.getpid()
    assert len(notices) == 1 and "took over the stale lock" in notices[0]
    assert f"pid {dead_pid()}" in notices[0]


def test_a_live_holder_blocks_until_it_is_killed(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        plant_lock(tmp_path / "h100", holder.pid)
        with pytest.raises(LockHeld, match=f"pid {holder.pid} "):
            RunLock.for_dir(tmp_path / "h100").acquire()
    finally:
        holder.kill()
        holder.wait()
    notices = []
    with RunLock.for_dir(tmp_path / "h100", notice=notices.append):
        pass
    assert "stale" in notices[0] and not lock_path(tmp_path / "h100").exists()


def test_another_hosts_lock_is_never_taken_over(tmp_path):
    path = plant_lock(tmp_path / "h100", dead_pid(), host="some-other-host")
    before = path.read_bytes()
    with pytest.raises(LockHeld, match="some-other-host"):
        RunLock.for_dir(tmp_path / "h100").acquire()
    assert path.read_bytes() == before


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]"])
def test_an_unreadable_lock_is_not_guessed_at(tmp_path, content):
    path = lock_path(tmp_path / "h100")
    path.write_text(content)
    with pytest.raises(LockHeld, match="unreadable"):
        RunLock.for_dir(tmp_path / "h100").acquire()
    assert path.read_text() == content


def test_release_never_removes_someone_elses_lock(tmp_path):
    lock = RunLock.for_dir(tmp_path / "h100").acquire()
    plant_lock(tmp_path / "h100", os.getpid())  # replaced under our feet
    lock.release()
    assert json.loads(lock.path.read_text())["token"] == "theirs"


def test_of_racing_writers_exactly_one_wins(tmp_path):
    barrier, won, lost = threading.Barrier(8), [], []

    def race(i):
        barrier.wait()
        try:
            won.append(RunLock.for_dir(tmp_path / "h100", [f"run {i}"]).acquire())
        except LockHeld:
            lost.append(i)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(lost) == 7


# --- the writers respect it ---------------------------------------------------------------------


def test_fig7_refuses_a_held_results_dir(tmp_path, capsys):
    path = plant_lock(tmp_path / "h100", os.getpid())
    before = path.read_bytes()
    code = fig7.main(["--gpu", "h100", "--results", str(tmp_path)], detect=lambda: H100,
                     timer_loader=never)
    err = capsys.readouterr().err
    assert code == 5 and err.count("\n") == 1 and err.startswith("error: fig7: results in use")
    assert f"pid {os.getpid()}" in err and "python -m scripts.fig7 --gpu h100" in err
    assert path.read_bytes() == before and not (tmp_path / "h100").exists()


def test_fig11_refuses_a_held_results_dir(tmp_path, capsys):
    plant_lock(tmp_path / "fig11" / "h100", os.getpid())
    code = fig11.main(["--gpu", "h100", "--results", str(tmp_path)], detect=lambda: H100,
                      timer_loader=never)
    err = capsys.readouterr().err
    assert code == 5 and err.startswith("error: fig11: results in use") and "pid" in err


def test_adopt_refuses_while_expected_is_being_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(verify, "stale_reason", lambda meta, root=None: None)
    results, expected = tmp_path / "results", write_expected(tmp_path / "expected")
    write_run(results)
    plant_lock(expected / "reference_bands.json", os.getpid())
    before = snapshot(expected)
    code = verify.main(["--results", str(results), "--expected", str(expected), "--gpu",
                        "h100", "--adopt"])
    err = capsys.readouterr().err
    assert code == 5 and "error: verify: results in use" in err
    assert snapshot(expected) == before


def test_report_refuses_a_held_results_dir(tmp_path, capsys):
    d = write_run(tmp_path)
    plant_lock(d, os.getpid())
    before = snapshot(d)
    assert report.main([str(d)]) == 5
    assert capsys.readouterr().err.startswith("error: report: results in use")
    assert snapshot(d) == before


def fake_run(records_then=None):
    """A stand-in for scripts.harness.run.run: one record, then ``records_then`` (raise)."""
    def run(ctx, plan, compile_graph=None, skip=frozenset()):
        ctx.sink(Record(case="ntrans", batch=1, implementation="eager", family="pytorch",
                        status=rec.NOT_AVAILABLE, gpu=ctx.gpu, run_id=ctx.run_id,
                        commit="abc", timestamp="t", error="fake"))
        if records_then:
            raise records_then
    return run


FIG7_ARGS = ["--gpu", "h100", "--cases", "ntrans", "--batches", "1", "--baselines", "eager",
             "--device", "cpu"]


def fig7_fake(tmp_path, monkeypatch, then=None, extra=()):
    monkeypatch.setattr(run_module, "run", fake_run(then))
    return fig7.main([*FIG7_ARGS, "--results", str(tmp_path), *extra], detect=lambda: H100,
                     timer_loader=lambda n: (never, "fake"))


def test_fig7_takes_over_a_stale_lock_and_releases_it(tmp_path, capsys, monkeypatch):
    plant_lock(tmp_path / "h100", dead_pid())
    assert fig7_fake(tmp_path, monkeypatch) == 0
    assert "took over the stale lock" in capsys.readouterr().err
    assert not lock_path(tmp_path / "h100").exists() and (tmp_path / "h100" / "metadata.json")\
        .exists()


def test_a_run_never_removes_another_runs_staging(tmp_path, capsys, monkeypatch):
    other = Staging(tmp_path, "h100", "20261206-010101-other1", {"x": 1}, 7)
    other.add(Record(case="gqa", batch=1, implementation="eager", family="pytorch",
                     status=rec.NOT_AVAILABLE, gpu="h100", run_id=other.run_id, commit="c",
                     timestamp="t", error="e"))
    before = snapshot(other.dir)
    assert fig7_fake(tmp_path, monkeypatch) == 0  # a whole run publishes meanwhile
    assert snapshot(other.dir) == before
    assert "1 interrupted run(s) of h100 kept" in capsys.readouterr().err
    assert Staging.interrupted(tmp_path, "h100") == [other.dir]  # its own is gone


def test_two_stagings_of_one_gpu_leave_each_other_alone(tmp_path):
    a = Staging(tmp_path, "h100", "run-a")
    b = Staging(tmp_path, "h100", "run-b")
    b.write_text("table.txt", "b's table\n")
    before = snapshot(b.dir)
    a.publish({})
    assert snapshot(b.dir) == before and not a.dir.exists()
    with pytest.raises(FileExistsError):
        Staging(tmp_path, "h100", "run-b")  # a run id is never shared


# --- atomic writers -----------------------------------------------------------------------------


def test_atomic_write_bytes_keeps_the_old_file_when_the_rename_fails(tmp_path, monkeypatch):
    target = tmp_path / "fig7.png"
    target.write_bytes(b"old figure")

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(rec.os, "replace", broken)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new figure")
    assert target.read_bytes() == b"old figure" and [p.name for p in tmp_path.iterdir()] == [
        "fig7.png"]


def test_atomic_write_bytes_keeps_the_mode(tmp_path):
    target = tmp_path / "fig7.png"
    target.write_bytes(b"old")
    target.chmod(0o640)
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and (target.stat().st_mode & 0o777) == 0o640


def test_run_all_summary_is_written_whole(tmp_path):
    outcomes = [run_all.Outcome("fig7", run_all.OK, 1.0)]
    run_all.write_summary(outcomes, tmp_path, "summary text")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json", "summary.txt"]
    assert json.loads((tmp_path / "summary.json").read_text())["exit_code"] == 0


# --- Ctrl-C: one line, what was kept, RESUME=1, exit 130 ----------------------------------------


def test_fig7_interrupted_mid_run_keeps_its_records(tmp_path, capsys, monkeypatch):
    assert fig7_fake(tmp_path, monkeypatch, KeyboardInterrupt()) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert "interrupted: nothing published; 1 records kept" in err[-1]
    assert "RESUME=1" in err[-1] and not any("Traceback" in x for x in err)
    (staged,) = Staging.interrupted(tmp_path, "h100")
    assert (staged / "records.jsonl.partial").read_text().count("\n") == 1
    assert not lock_path(tmp_path / "h100").exists() and not (tmp_path / "h100").exists()


@pytest.mark.parametrize("main, prog", [(fig7.main, "fig7"), (fig11.main, "fig11")])
def test_interrupted_before_measuring(tmp_path, capsys, main, prog):
    def interrupted():
        raise KeyboardInterrupt

    assert main(["--gpu", "h100", "--results", str(tmp_path)], detect=interrupted) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"{prog}: interrupted") and "RESUME=1" in err


def test_make_all_interrupted_ends_with_how_to_resume(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MIRAGE_IN_DOCKER", raising=False)
    monkeypatch.delenv("MIRAGE_ENV_RECORD", raising=False)

    def interrupted(opts):
        raise KeyboardInterrupt

    code = run_all.main(["--docker", "never", "--make", "true", "--out", str(tmp_path)],
                        detect=interrupted)
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 130 and "interrupted" in out[-1] and "make all RESUME=1" in out[-1]
    assert "kept: setup" in out[-1]


def test_verify_interrupted(tmp_path, capsys, monkeypatch):
    def interrupted(d):
        raise KeyboardInterrupt

    write_run(tmp_path / "results")
    monkeypatch.setattr(verify, "load_run", interrupted)
    code = verify.main(["--results", str(tmp_path / "results"), "--expected",
                        str(write_expected(tmp_path / "expected"))])
    err = capsys.readouterr().err
    assert code == 130 and err == "verify: interrupted; nothing adopted or changed\n"


def test_table5_interrupted_writes_nothing(tmp_path, capsys, monkeypatch):
    def interrupted(*a):
        raise KeyboardInterrupt

    monkeypatch.setattr(table5, "measure", interrupted)
    assert table5.main(["--ops", "3", "--workers", "1", "--out", str(tmp_path / "t5")]) == 130
    assert "interrupted" in capsys.readouterr().err and not (tmp_path / "t5").exists()
