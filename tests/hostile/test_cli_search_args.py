"""``python -m mirage search`` with bad arguments: one ``error:`` line naming the argument or
file, exit status 2, no traceback, and nothing written."""

import json
import subprocess
import sys

import pytest
from hostile_helpers import (
    TINY_FLAGS,
    error_line,
    run_cli,
    search_argv,
    subprocess_env,
)

from mirage.ir import save
from mirage.workloads import WORKLOADS


def _base(tmp_path, finished):
    return ["search", "--program", finished["program"], "--out", tmp_path / "out.json"]


BAD_VALUES = [
    (["--batch", "0"], "--batch", "must be >= 1, got 0"),
    (["--batch", "-3"], "--batch", "must be >= 1, got -3"),
    (["--batch", "two"], "--batch", "not a whole number: 'two'"),
    (["--workers", "0"], "--workers", "must be >= 1, got 0"),
    (["--workers", "-1"], "--workers", "must be >= 1, got -1"),
    (["--time-budget", "-1"], "--time-budget", "got -1"),
    (["--time-budget", "nan"], "--time-budget", "got nan"),
    (["--time-budget", "inf"], "--time-budget", "got inf"),
    (["--time-budget", "soon"], "--time-budget", "not a number of seconds: 'soon'"),
    (["--keep", "0"], "--keep", "must be >= 1, got 0"),
    (["--max-block-ops", "0"], "--max-block-ops", "must be >= 1, got 0"),
    (["--max-kernel-ops", "0"], "--max-kernel-ops", "must be >= 1, got 0"),
    (["--target", "v100"], "--target", "invalid choice: 'v100'"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate", ""),
]


@pytest.mark.parametrize(("extra", "flag", "text"), BAD_VALUES,
                         ids=[" ".join(x[0]) for x in BAD_VALUES])
def test_a_bad_value_is_one_error_line_naming_the_flag(tmp_path, finished, capsys, extra, flag,
                                                       text):
    rc, out, err = run_cli(capsys, *_base(tmp_path, finished), *extra)
    line = error_line(err)
    assert rc == 2 and flag in line and text in line, line
    assert not (tmp_path / "out.json").exists()


def test_an_unknown_case_lists_the_known_ones(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "search", "--case", "rmsnrom", "--out", tmp_path / "o.json")
    line = error_line(err)
    assert rc == 2
    assert line == f"error: --case: unknown case 'rmsnrom' (known: {', '.join(WORKLOADS)})"


@pytest.mark.parametrize("content", [None, "", "{", "[1, 2]", '{"format": "other"}'],
                         ids=["missing", "empty", "truncated", "a list", "another format"])
def test_a_program_file_that_is_not_a_mugraph_file_is_named(tmp_path, capsys, content):
    path = tmp_path / "prog.json"
    if content is not None:
        path.write_text(content)
    rc, _, err = run_cli(capsys, "search", "--program", path, "--out", tmp_path / "o.json")
    line = error_line(err)
    assert rc == 2 and line.startswith(f"error: {path}: "), line


def test_a_program_file_with_no_graph_is_refused(tmp_path, capsys):
    path = tmp_path / "empty.json"
    save(path, [])
    rc, _, err = run_cli(capsys, "search", "--program", path, "--out", tmp_path / "o.json")
    assert rc == 2
    assert error_line(err) == (f"error: --program {path}: the file holds no program and no "
                               f"graph")


def test_a_program_that_is_a_directory_is_named(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "search", "--program", tmp_path, "--out", tmp_path / "o.json")
    line = error_line(err)
    assert rc == 2 and line.startswith(f"error: {tmp_path}: ") and "cannot read" in line


@pytest.mark.parametrize("which", ["--out", "--checkpoint"])
def test_an_output_path_that_is_a_directory_is_refused_before_the_search(
        tmp_path, finished, capsys, which):
    argv = [*_base(tmp_path, finished), "--checkpoint", tmp_path / "c.ckpt", *TINY_FLAGS]
    argv[argv.index(which) + 1] = tmp_path
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 2 and out == ""  # no search ran: no report
    assert error_line(err) == f"error: {which} {tmp_path}: is a directory"


@pytest.mark.parametrize("which", ["--out", "--checkpoint"])
def test_an_output_in_a_missing_directory_is_refused_before_the_search(
        tmp_path, finished, capsys, which):
    argv = [*_base(tmp_path, finished), "--checkpoint", tmp_path / "c.ckpt", *TINY_FLAGS]
    target = tmp_path / "no" / "such" / "file.json"
    argv[argv.index(which) + 1] = target
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 2 and out == ""
    assert error_line(err) == (f"error: {which} {target}: directory {target.parent} does not "
                               f"exist")


def test_an_existing_out_that_is_not_a_mugraph_file_is_kept(tmp_path, finished, capsys):
    out = tmp_path / "out.json"
    out.write_text("my notes, not a search result\n")
    rc, stdout, err = run_cli(capsys, *_base(tmp_path, finished), *TINY_FLAGS)
    assert rc == 2 and stdout == ""
    line = error_line(err)
    assert line.startswith(f"error: --out {out}: exists and is not a readable µGraph file")
    assert out.read_text() == "my notes, not a search result\n"


def test_case_and_program_together_are_refused(tmp_path, finished, capsys):
    rc, _, err = run_cli(capsys, *_base(tmp_path, finished), "--case", "rmsnorm")
    assert rc == 2
    assert error_line(err) == "error: argument --case: not allowed with argument --program"


def test_a_bad_mirage_target_is_one_error_line(tmp_path, finished, capsys, monkeypatch):
    monkeypatch.setenv("MIRAGE_TARGET", "tpu")
    rc, _, err = run_cli(capsys, *_base(tmp_path, finished))
    assert rc == 2 and error_line(err).startswith("error: MIRAGE_TARGET='tpu': not a known")


@pytest.mark.parametrize("argv", [["search", "--case", "nope", "--out", "o.json"],
                                  ["search", "--case", "rmsnorm", "--out", "o.json", "--keep",
                                   "0"],
                                  ["check"]],
                         ids=["unknown case", "keep 0", "check without files"])
def test_through_a_subprocess_there_is_no_traceback(tmp_path, argv):
    done = subprocess.run([sys.executable, "-m", "mirage", *argv], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path, env=subprocess_env())
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ") and len(done.stderr.splitlines()) == 1
    assert not (tmp_path / "o.json").exists()


def test_the_out_file_of_a_good_run_is_a_full_result(work, capsys):
    work["out"].unlink()
    rc, out, _ = run_cli(capsys, *search_argv(work))
    assert rc == 0 and out.splitlines()[-1].startswith("[Search] finished.")
    doc = json.loads(work["out"].read_text())
    assert doc["meta"]["searched"] == len(doc["graphs"]) - 1  # and the program, last
    assert doc["graphs"][-1] == doc["program"]
