"""``python -m mirage check``: 'valid: ...' and exit 0, or the error and exit 1."""

import json
import subprocess
import sys

from mirage.ir import save
from mirage.workloads import PROGRAMS, REFERENCES

SHAPES = {"X": (4, 64), "W": (64, 64)}


def _run(*args):
    return subprocess.run([sys.executable, "-m", "mirage", "check", *args], capture_output=True,
                          text=True, timeout=120)


def test_valid_file_is_summarised_and_verified(tmp_path):
    path = tmp_path / "ok.json"
    prog = PROGRAMS["rmsnorm"](SHAPES)
    save(path, [REFERENCES["rmsnorm"](SHAPES, tile_n=16, tile_k=16)], program=prog)
    result = _run(str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"valid: {path}: 1 graph + input program")
    assert "graph 0: 2 inputs -> 1 output; 1 kernel: customized[grid 4x1x1, loop 4" in result.stdout
    assert "| verified: " in result.stdout and "false-pass bound " in result.stdout
    assert result.stdout.splitlines()[-1] == "1 file: 1 valid, 0 invalid"


def test_malformed_file_prints_the_error_and_exits_1(tmp_path):
    path = tmp_path / "bad.json"
    save(path, [PROGRAMS["rmsnorm"](SHAPES)])
    doc = json.loads(path.read_text())
    doc["graphs"][0]["nodes"][2]["op"] = "frobnicate"
    path.write_text(json.dumps(doc))
    result = _run(str(path))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"error: {path}: graphs[0].nodes[2]: unknown op: 'frobnicate'",
        "1 file: 0 valid, 1 invalid",
    ]
    assert "Traceback" not in result.stderr


def test_inequivalent_candidate_fails(tmp_path):
    path = tmp_path / "wrong.json"
    save(path, [PROGRAMS["gatedmlp"]({"X": (4, 64), "W1": (64, 64), "W2": (64, 64)})],
         program=PROGRAMS["lora"]({"X": (4, 64), "W": (64, 64), "A": (64, 64), "B": (64, 64)}))
    result = _run(str(path))
    assert result.returncode == 1 and "NOT EQUIVALENT" in result.stdout
