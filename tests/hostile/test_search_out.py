"""``--out`` and every writer: a good result is never replaced by a worse one, a refused result
is kept beside it, files are written atomically with the mode a user expects."""

import json
import os

import pytest
from hostile_helpers import run_cli, search_argv

from mirage.errors import OutputError
from mirage.files import atomic_write_text
from mirage.ir import load


def _searched(path):
    doc = load(path)
    return sum(g != doc.program for g in doc.graphs)


@pytest.mark.parametrize("extra", [["--keep", "1"], ["--time-budget", "0", "--restart"]],
                         ids=["fewer candidates", "an empty result"])
def test_a_worse_result_does_not_replace_a_good_out(work, capsys, extra):
    before = work["out"].read_bytes()
    rc, _, err = run_cli(capsys, *search_argv(work), *extra)
    beside = work["out"].with_name("out.new.json")
    new = _searched(beside)
    assert rc == 1 and new < 2
    assert err.strip().splitlines()[-1] == (
        f"error: --out {work['out']} kept: it holds 2 verified candidates, the new result "
        f"{new}; the new result is at {beside} (--force replaces)")
    assert work["out"].read_bytes() == before
    assert load(beside).graphs[-1] == load(beside).program  # never empty: the program


def test_force_replaces_a_good_out(work, capsys):
    rc, _, _ = run_cli(capsys, *search_argv(work), "--keep", "1", "--force")
    assert rc == 0 and _searched(work["out"]) == 1
    assert not work["out"].with_name("out.new.json").exists()


def test_a_result_as_good_replaces_the_out(work, capsys):
    doc = json.loads(work["out"].read_text())
    doc["meta"]["marker"] = "old"
    work["out"].write_text(json.dumps(doc))
    rc, _, _ = run_cli(capsys, *search_argv(work))
    assert rc == 0 and "marker" not in json.loads(work["out"].read_text())["meta"]


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_new_file_honours_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "new.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "new.json").stat().st_mode & 0o777 == mode


@pytest.mark.parametrize("mode", [0o640, 0o600, 0o755])
def test_a_replaced_file_keeps_its_mode(tmp_path, mode):
    path = tmp_path / "kept.json"
    path.write_text("old")
    path.chmod(mode)
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and path.stat().st_mode & 0o777 == mode


def test_the_search_outputs_are_readable_by_others(work, capsys):
    work["out"].unlink()
    work["checkpoint"].unlink()
    old = os.umask(0o022)
    try:
        assert run_cli(capsys, *search_argv(work))[0] == 0
    finally:
        os.umask(old)
    assert work["out"].stat().st_mode & 0o777 == 0o644
    assert work["checkpoint"].stat().st_mode & 0o777 == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "kept.json"
    path.write_text("old")

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OutputError, match=f"^{path}: cannot write: No space left on device$"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["kept.json"]


def test_the_data_is_synced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("rename"), real_replace(a, b)))
    atomic_write_text(tmp_path / "f.json", "x")
    assert events[:2] == ["fsync", "rename"]


def test_writing_over_a_directory_is_refused(tmp_path):
    with pytest.raises(OutputError, match="cannot write"):
        atomic_write_text(tmp_path, "x")
