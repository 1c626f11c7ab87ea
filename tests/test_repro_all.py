"""`make all` end to end on this machine (no GPU) in its reduced mode, the checker on the shipped
expected/, the environment record, and `make help` / `make clean`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import run_all_parts

ROOT = Path(__file__).resolve().parent.parent


def checkout_copy(tmp_path: Path) -> Path:
    """This checkout's files (tracked, and untracked but not ignored) in ``tmp_path/repo``,
    sharing its .venv (symlinked), so a run writes its results/ there, not here."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    repo = tmp_path / "repo"
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            dst = repo / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    (repo / ".venv").symlink_to(ROOT / ".venv")
    return repo


def venv_ready() -> bool:
    stamp = ROOT / ".venv" / ".installed"
    return stamp.exists() and all(stamp.stat().st_mtime >= (ROOT / f).stat().st_mtime
                                  for f in ("requirements.txt", "pyproject.toml"))


def make(repo: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    return subprocess.run(["make", "--no-print-directory", *args], cwd=repo, capture_output=True,
                          text=True, timeout=timeout, env={**env, "DOCKER": "never"})


@pytest.mark.skipif(not venv_ready(), reason="needs the .venv that `make test` builds (CI has it)")
def test_make_all_quick_on_a_machine_without_gpu(tmp_path):
    repo = checkout_copy(tmp_path)
    p = make(repo, "all", "QUICK=1")
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-5000:]
    assert "Traceback" not in out
    summary = out[out.index("make all: summary"):]
    rows = {line.split()[0]: line.split()[1] for line in summary.splitlines()[2:]
            if line.startswith("  ")}
    assert rows["setup"] == rows["environment"] == rows["check-saved"] == "ok"
    assert rows["reference"] == "ok"
    assert rows["fig7"] == rows["fig11"] == rows["verify"] == "skipped"
    assert "table5" in rows  # skipped until its target exists, then run with QUICK=1
    assert re.search(r"fig7 +skipped +- +no GPU: ", summary)
    assert re.search(r"make all: \d+ ok, \d+ skipped, 0 failed -> ok", summary)
    (run,) = (repo / "results" / "make-all").iterdir()
    assert json.loads((run / "summary.json").read_text())["exit_code"] == 0
    env = json.loads((run / "environment.json").read_text())
    assert env["software"]["torch"] and env["pip_freeze"]
    assert "valid: saved_mugraphs/rmsnorm_b1.json" in (run / "logs" / "check-saved.log").read_text()


def test_make_help_lists_every_target_on_one_line():
    p = make(ROOT, "help", timeout=60)
    assert p.returncode == 0
    listed = re.findall(r"^  make (\S+) +\S", p.stdout, flags=re.M)
    for target in ("all", "docker", "test", "check-saved", "fig7", "hopper", "verify", "clean",
                   "help"):
        assert target in listed
    phony = set()
    for line in (ROOT / "Makefile").read_text().splitlines():
        if line.startswith(".PHONY:"):
            phony |= set(line.split(":", 1)[1].split())
    missing = sorted(phony - set(listed))
    assert not missing, f"targets without a '## description' for make help: {missing}"


def test_make_n_all_runs_nothing():
    p = make(ROOT, "-n", "all", timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("python3 -m scripts.run_all"), p.stdout
    assert "make all:" not in p.stdout


def test_make_clean_keeps_the_venv(tmp_path):
    repo = checkout_copy(tmp_path)
    for junk in ("results/h100/records.jsonl", ".cache/x", "mirage/__pycache__/x.pyc"):
        (repo / junk).parent.mkdir(parents=True, exist_ok=True)
        (repo / junk).write_text("")
    p = make(repo, "clean", timeout=60)
    assert p.returncode == 0, p.stderr
    assert not (repo / "results").exists() and not (repo / ".cache").exists()
    assert not (repo / "mirage" / "__pycache__").exists()
    assert (repo / ".venv").exists()


# --- the checker on expected/ -------------------------------------------------------------------


def expected_copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "expected", tmp_path / "expected")
    return tmp_path / "expected"


def set_band(expected: Path, gpu: str, case: str, batch: int, **fields) -> None:
    path = expected / "reference_bands.json"
    doc = json.loads(path.read_text())
    for band in doc["bands"]:
        if (band["gpu"], band["case"], band["batch"]) == (gpu, case, batch):
            band.update(fields)
    path.write_text(json.dumps(doc))


MEASURED = {"status": "measured", "speedup": 1.2, "low": 1.02, "high": 1.38, "tolerance": 0.15,
            "provenance": {"run_id": "r", "mirage_us": 20.0, "best_baseline_us": 24.0,
                           "best_baseline": "torch.compile"}}


def test_reference_check_on_the_shipped_expected(capsys):
    assert run_all_parts.reference_main([]) == 0
    out = capsys.readouterr().out
    assert "h100:" in out and "| verdict" in out and "reference: ok" in out


def test_reference_check_shows_a_measured_band_as_its_own_run(tmp_path, capsys):
    expected = expected_copy(tmp_path)
    set_band(expected, "h100", "rmsnorm", 1, **MEASURED)
    assert run_all_parts.reference_main(["--expected", str(expected)]) == 0
    row = next(x for x in capsys.readouterr().out.splitlines() if "| rmsnorm  | 1 " in x
               and "1.20x" in x)
    assert "1.02-1.38x" in row and "PASS" in row


@pytest.mark.parametrize("fields, problem", [
    ({**MEASURED, "speedup": 1.5}, "disagrees with its provenance"),
    ({**MEASURED, "low": 1.3, "high": 1.4, "speedup": 1.2}, "gives MISS"),
    ({**MEASURED, "provenance": {"run_id": "r"}}, "without the Mirage and best-baseline"),
])
def test_reference_check_finds_unsound_bands(tmp_path, capsys, fields, problem):
    expected = expected_copy(tmp_path)
    set_band(expected, "h100", "gqa", 8, **fields)
    assert run_all_parts.reference_main(["--expected", str(expected)]) == 1
    assert problem in capsys.readouterr().err


def test_reference_check_wants_every_figure7_band(tmp_path, capsys):
    expected = expected_copy(tmp_path)
    path = expected / "reference_bands.json"
    doc = json.loads(path.read_text())
    doc["bands"] = [b for b in doc["bands"] if not (b["gpu"] == "a100" and b["case"] == "lora")]
    path.write_text(json.dumps(doc))
    assert run_all_parts.reference_main(["--expected", str(expected)]) == 1
    assert "no band for a100 lora b=1" in capsys.readouterr().err
    (expected / "paper_claims.json").write_text("{not json")
    assert run_all_parts.reference_main(["--expected", str(expected)]) == 1


def test_environment_record(tmp_path, capsys):
    out = tmp_path / "env" / "e.json"
    assert run_all_parts.main(["env", "--out", str(out)]) == 0
    rec = json.loads(out.read_text())
    assert rec["python"] == sys.version.split()[0]
    assert rec["code"]["fingerprint"] and rec["software"]["numpy"]
    assert isinstance(rec["nvidia_smi"], (list, str))
    assert capsys.readouterr().out.strip() == str(out)
    assert run_all_parts.main([]) == 2
