"""``python -m mirage check`` on hostile files: every file is checked and reported even after a
bad one, a file without a program is not called verified, and the run ends with a summary."""

import os

import pytest
from hostile_helpers import SMALL_RMS, run_cli, tiny_program

from mirage.ir import save
from mirage.workloads import PROGRAMS, REFERENCES

BAD_FILES = {
    "missing": None,
    "empty": b"",
    "binary garbage": bytes(range(256)) * 4,
    "latin-1 text": "caf\xe9".encode("latin-1"),
    "truncated JSON": b'{"format": "mirage-mugraph", "version": 1, "graphs": [',
    "a JSON list": b"[1, 2, 3]",
    "another format": b'{"format": "mirage-search-checkpoint", "version": 2}',
    "deeply nested": b"[" * 100000 + b"]" * 100000,
    "graphs not a list": b'{"format": "mirage-mugraph", "version": 1, "graphs": 7}',
}


def _good(tmp_path):
    path = tmp_path / "good.json"
    save(path, [REFERENCES["rmsnorm"](SMALL_RMS, tile_n=16, tile_k=16)],
         program=PROGRAMS["rmsnorm"](SMALL_RMS))
    return path


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_a_bad_file_is_reported_and_the_next_one_still_checked(tmp_path, capsys, kind):
    bad = tmp_path / "bad.json"
    if BAD_FILES[kind] is not None:
        bad.write_bytes(BAD_FILES[kind])
    good = _good(tmp_path)
    rc, out, err = run_cli(capsys, "check", bad, good)
    lines = out.splitlines()
    assert rc == 1 and err == ""
    assert lines[0].startswith(f"error: {bad}: "), out
    assert lines[1] == f"valid: {good}: 1 graph + input program"
    assert "| verified: " in lines[2] and "false-pass bound " in lines[2]
    assert lines[-1] == "2 files: 1 valid, 1 invalid"


def test_a_directory_is_reported_as_unreadable(tmp_path, capsys):
    rc, out, _ = run_cli(capsys, "check", tmp_path, _good(tmp_path))
    assert rc == 1
    assert out.splitlines()[0].startswith(f"error: {tmp_path}: <top>: cannot read")
    assert out.splitlines()[-1] == "2 files: 1 valid, 1 invalid"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_is_reported(tmp_path, capsys):
    path = _good(tmp_path)
    path.chmod(0)
    rc, out, _ = run_cli(capsys, "check", path)
    assert rc == 1 and "cannot read" in out.splitlines()[0]


def test_a_file_without_a_program_is_not_verified(tmp_path, capsys):
    path = tmp_path / "noprog.json"
    save(path, [tiny_program()])
    rc, out, _ = run_cli(capsys, "check", path)
    assert rc == 1
    assert out.splitlines()[-2].startswith(f"not verified: no program: {path}")
    assert out.splitlines()[-1] == "1 file: 0 valid, 1 invalid"


@pytest.mark.parametrize("flag", ["--no-program-ok", "--no-verify"])
def test_a_file_without_a_program_is_accepted_when_asked(tmp_path, capsys, flag):
    path = tmp_path / "noprog.json"
    save(path, [tiny_program()])
    rc, out, _ = run_cli(capsys, "check", flag, path)
    assert rc == 0 and "not verified" not in out
    assert out.splitlines()[-1] == "1 file: 1 valid, 0 invalid"


def test_every_file_of_many_is_reported_in_order(tmp_path, capsys):
    wrong = tmp_path / "wrong.json"
    lora = {"X": (4, 64), "W": (64, 64), "A": (64, 64), "B": (64, 64)}
    save(wrong, [PROGRAMS["gatedmlp"]({"X": (4, 64), "W1": (64, 64), "W2": (64, 64)})],
         program=PROGRAMS["lora"](lora))
    missing = tmp_path / "missing.json"
    good = _good(tmp_path)
    rc, out, _ = run_cli(capsys, "check", missing, wrong, good, missing)
    assert rc == 1
    starts = [x.split(":")[0] for x in out.splitlines() if not x.startswith("  ")]
    assert starts == ["error", "valid", "valid", "error", "4 files"]
    assert "NOT EQUIVALENT" in out
    assert out.splitlines()[-1] == "4 files: 1 valid, 3 invalid"


def test_the_default_target_is_the_detected_one(tmp_path, capsys, monkeypatch):
    # A graph that fits the H100's shared memory but not the A100's is valid only on the
    # target the environment names: the default follows ``default_target``.
    from mirage.cli import build_parser

    monkeypatch.setenv("MIRAGE_TARGET", "a100")
    assert build_parser().parse_args(["check", "x"]).target == "a100"
    monkeypatch.setenv("MIRAGE_TARGET", "h100")
    assert build_parser().parse_args(["check", "x"]).target == "h100"
