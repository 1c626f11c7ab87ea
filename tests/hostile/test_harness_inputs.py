"""Issue 15, one clear error: every bad input of the make targets' scripts ends in one stderr
line ``error: <script>: ...`` and exit 2, before anything is detected, measured or written; a
few go through a subprocess or ``make`` to show no traceback reaches the user."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hostile_runs import REPO, write_expected, write_run

from scripts import fig7, fig11, report, run_all, table5, verify


def never(*a, **k):
    raise AssertionError("bad input must be refused before this runs")


def one_error(capsys, prog: str, *words: str) -> str:
    out = capsys.readouterr()
    err = out.err
    assert err.startswith(f"error: {prog}: ") and err.count("\n") == 1, err
    assert "Traceback" not in out.out + err
    for w in words:
        assert w in err, (w, err)
    return err


FIG7_BAD = [
    (["--gpu", "../x"], ["unknown GPU '../x'", "a100, h100, h200"]),
    (["--gpu", "x100"], ["unknown GPU 'x100'"]),
    (["--gpu", "h100/../../etc"], ["unknown GPU"]),
    (["--cases", "gemm"], ["unknown case 'gemm'", "known: gqa, qknorm"]),
    (["--case", "gqa,../x"], ["unknown case '../x'"]),  # argparse's prefix of --cases
    (["--batches", "0"], ["--batches entry '0' is not a positive integer"]),
    (["--batches", "-8"], ["'-8' is not a positive integer"]),
    (["--batches", "1.5"], ["'1.5' is not a positive integer"]),
    (["--batches", "abc"], ["'abc' is not a positive integer"]),
    (["--batches", ","], ["names no batch size"]),
    (["--batches", "8,8"], ["names a batch size twice"]),
    (["--batches", "99999999999"], ["is not a positive integer"]),
    (["--samples", "0"], ["--samples", "not a positive integer"]),
    (["--calls-per-graph", "-1"], ["--calls-per-graph"]),
    (["--baselines", "cublas"], ["unknown baseline 'cublas'"]),
    (["--frobnicate"], ["unrecognized arguments: --frobnicate"]),
    (["--compile-mode", "fastest"], ["invalid choice: 'fastest'"]),
]


@pytest.mark.parametrize("argv, words", FIG7_BAD)
def test_fig7_bad_input(tmp_path, capsys, argv, words):
    code = fig7.main([*argv, "--results", str(tmp_path / "r")], detect=never,
                     timer_loader=never)
    assert code == 2
    one_error(capsys, "fig7", *words)
    assert not (tmp_path / "r").exists()  # nothing written, no lock left


FIG11_BAD = [
    (["--gpu", "../x"], ["unknown GPU '../x'"]),
    (["--batches", "0"], ["not a positive integer"]),
    (["--models", "llama3-70b"], ["unknown model 'llama3-70b'"]),
    (["--variants", ","], ["--variants names none"]),
    (["--variants", "tensorrt"], ["unknown --variants value 'tensorrt'"]),
    (["--budget-s", "nan"], ["--budget-s nan"]),
    (["--budget-s", "-1"], ["--budget-s -1"]),
    (["--layers", "0"], ["--layers"]),
]


@pytest.mark.parametrize("argv, words", FIG11_BAD)
def test_fig11_bad_input(tmp_path, capsys, argv, words):
    code = fig11.main([*argv, "--results", str(tmp_path / "r")], detect=never,
                      timer_loader=never)
    assert code == 2
    one_error(capsys, "fig11", *words)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv, words", [
    (["--gpu", "../x"], ["unknown GPU '../x'"]),
    (["--gpu", "rtx9090"], ["unknown GPU 'rtx9090'"]),
    (["--adopt"], ["--adopt needs --gpu"]),
    (["--wat"], ["unrecognized arguments"]),
])
def test_verify_bad_input(tmp_path, capsys, argv, words):
    results, expected = tmp_path / "results", write_expected(tmp_path / "expected")
    write_run(results)
    code = verify.main(["--results", str(results), "--expected", str(expected), *argv])
    assert code == 2
    one_error(capsys, "verify", *words)


def test_verify_results_or_expected_dir_missing(tmp_path, capsys):
    assert verify.main(["--results", str(tmp_path / "nope")]) == 2
    one_error(capsys, "verify", "no results directory")
    (tmp_path / "results").mkdir()
    assert verify.main(["--results", str(tmp_path / "results"), "--expected",
                        str(tmp_path / "gone")]) == 2
    one_error(capsys, "verify", "no expected directory")


RUN_ALL_BAD = [
    (["--gpu", "../x"], ["unknown GPU '../x'"]),
    (["--only", "fig8"], ["unknown part(s) fig8"]),
    (["--skip", "fig7,nope"], ["unknown part(s) nope"]),
    (["--out", "../elsewhere"], ["may not contain '..'"]),
    (["--out", str(REPO / "mirage")], ["inside the checkout but not under results/"]),
    (["--out", str(REPO / "expected")], ["not under results/"]),
    (["--part-timeout", "-5"], ["PART_TIMEOUT=-5"]),
    (["--part-timeout", "nan"], ["PART_TIMEOUT=nan"]),
    (["--docker", "sometimes"], ["invalid choice: 'sometimes'"]),
]


@pytest.mark.parametrize("argv, words", RUN_ALL_BAD)
def test_run_all_bad_input(capsys, argv, words):
    assert run_all.main(argv, detect=never) == 2
    one_error(capsys, "make all", *words)


def test_run_all_out_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert run_all.main(["--out", str(f)], detect=never) == 2
    one_error(capsys, "make all", "is a file")
    assert f.read_text() == "x"


@pytest.mark.parametrize("argv, words", [
    (["--ops", "0"], ["--ops"]),
    (["--ops", "7-5"], ["low <= high"]),
    (["--ops", "5-x"], ["'x' is not a positive integer"]),
    (["--workers", "0"], ["--workers"]),
    (["--cap", "nan"], ["--cap nan"]),
    (["--ops", "", "--no-pruning-ops", ""], ["name no limit"]),
])
def test_table5_bad_input(tmp_path, capsys, argv, words):
    assert table5.main([*argv, "--out", str(tmp_path / "t5")]) == 2
    one_error(capsys, "table5", *words)
    assert not (tmp_path / "t5").exists()


def test_report_on_a_missing_directory(tmp_path, capsys):
    assert report.main([str(tmp_path / "results" / "h100")]) == 2
    one_error(capsys, "report", "is not a directory")


# --- through a process and through make: no traceback reaches the user --------------------------


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.mark.parametrize("module, argv, prog", [
    ("scripts.fig7", ["--batches", "0"], "fig7"),
    ("scripts.run_all", ["--gpu", "../../etc"], "make all"),
])
def test_scripts_as_processes_print_one_error_line(module, argv, prog):
    p = subprocess.run([sys.executable, "-m", module, *argv], cwd=REPO, capture_output=True,
                       text=True, timeout=120, env=_env())
    assert p.returncode == 2 and "Traceback" not in p.stdout + p.stderr
    assert p.stderr.startswith(f"error: {prog}: ") and p.stderr.count("\n") == 1


@pytest.mark.parametrize("variables, words", [
    (["GPU=../x"], ["error: verify: unknown GPU '../x'"]),
    (["GPU=it's --adopt"], ["error: verify: unknown GPU \"it's --adopt\""]),  # one word
])
def test_make_verify_with_a_bad_gpu(variables, words):
    p = subprocess.run(["make", "--no-print-directory", "verify", *variables, "STAMP=",
                        f"VPY={sys.executable}"], cwd=REPO, capture_output=True, text=True,
                       timeout=120, env=_env())
    assert p.returncode != 0 and "Traceback" not in p.stdout + p.stderr
    assert all(w in p.stderr for w in words), p.stderr


def test_make_verify_on_a_tampered_run(tmp_path):
    results = tmp_path / "results"
    write_run(results, text='{"case": "gqa", "bat\n')
    p = subprocess.run([sys.executable, "-m", "scripts.verify", "--results", str(results),
                        "--allow-stale"], cwd=REPO, capture_output=True, text=True, timeout=120,
                       env=_env())
    assert p.returncode == 1 and "Traceback" not in p.stdout + p.stderr
    assert "records.jsonl:1: not JSON" in p.stderr and p.stdout.strip().endswith("FAILED")
