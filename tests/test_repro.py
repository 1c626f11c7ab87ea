"""``make all``'s orchestrator (scripts/run_all.py) with a fake make, a fake python and a fake
GPU: which parts run where, what a missing or failing target does, the summary and the exit
code, the Docker decision, and that it never ends in a traceback."""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from pathlib import Path

import pytest

from scripts import run_all
from scripts.run_all import Gpu, Options

FAKE_MAKE = """#!{python}
import json, os, sys
spec = json.loads(os.environ["FAKE_MAKE_SPEC"])
args = [a for a in sys.argv[1:] if a != "--no-print-directory"]
dry = "-n" in args
args = [a for a in args if a != "-n"]
target, variables = args[0], args[1:]
with open(spec["log"], "a") as f:
    f.write(json.dumps({{"target": target, "vars": variables, "dry": dry}}) + "\\n")
if target not in spec["targets"]:
    print(f"make: *** No rule to make target '{{target}}'.  Stop.")
    sys.exit(2)
if not dry:
    print(f"fake {{target}} running")
sys.exit(0 if dry else spec["targets"][target])
"""

FAKE_PYTHON = """#!/bin/sh
echo "fake python $*" >> "$FAKE_PYTHON_LOG"
exit 0
"""


def _script(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    """A fake make whose targets exit as ``targets`` says, and a fake python."""
    make_log = tmp_path / "make.jsonl"
    py_log = tmp_path / "python.log"
    make = _script(tmp_path / "make", FAKE_MAKE.format(python=sys.executable))
    python = _script(tmp_path / "python", FAKE_PYTHON)
    monkeypatch.setenv("FAKE_PYTHON_LOG", str(py_log))
    monkeypatch.delenv("MIRAGE_ENV_RECORD", raising=False)
    monkeypatch.delenv("MIRAGE_IN_DOCKER", raising=False)
    # results/ of this checkout (a real run's output) must not change what the fakes plan
    monkeypatch.setattr(run_all, "RESULTS", tmp_path / "results")

    def setup(targets: dict[str, int]):
        monkeypatch.setenv("FAKE_MAKE_SPEC", json.dumps({"targets": {"venv": 0, **targets},
                                                         "log": str(make_log)}))

    def calls():
        if not make_log.exists():
            return []
        return [json.loads(x) for x in make_log.read_text().splitlines()]

    def argv(*extra):
        return ["--docker", "never", "--make", make, "--python", python,
                "--out", str(tmp_path / "out"), *extra]

    return setup, calls, argv, tmp_path


ALL_TARGETS = {"fig7": 0, "hopper": 0, "fig11": 0, "table5": 0, "check-saved": 0, "verify": 0}


def no_gpu(opts):
    return Gpu(None, None, "torch.cuda.is_available() is False")


def h100(opts):
    return Gpu((opts.gpu or "h100"), "NVIDIA H100 80GB HBM3")


def a100(opts):
    return Gpu((opts.gpu or "a100"), "NVIDIA A100-SXM4-80GB")


def summary_of(tmp_path: Path) -> dict:
    (run,) = (tmp_path / "out").iterdir()
    return {p["part"]: p for p in json.loads((run / "summary.json").read_text())["parts"]}


def test_cpu_only_quick_runs_what_needs_no_gpu(fakes, capsys):
    setup, calls, argv, tmp = fakes
    setup({"check-saved": 0})  # no table5, fig11, verify targets yet
    assert run_all.main(argv("--quick"), detect=no_gpu) == 0
    out = capsys.readouterr().out
    parts = summary_of(tmp)
    assert [p for p in parts] == ["setup", "environment", "fig7", "fig11", "table5",
                                  "check-saved", "reference", "verify"]
    assert parts["fig7"]["status"] == "skipped"
    assert parts["fig7"]["note"] == "no GPU: torch.cuda.is_available() is False"
    assert parts["fig11"]["status"] == "skipped" and parts["fig11"]["note"] == "no GPU"
    assert parts["table5"]["status"] == "skipped"
    assert "no make target 'table5'" in parts["table5"]["note"]
    assert parts["verify"]["status"] == "skipped" and "no results" in parts["verify"]["note"]
    # QUICK checks the b=1 files only, directly; the full check is `make check-saved`.
    quick = parts["check-saved"]["command"]
    assert quick[1:4] == ["-m", "mirage", "check"] and quick[4:]
    assert all(p.endswith("_b1.json") for p in quick[4:])
    assert parts["environment"]["status"] == parts["reference"]["status"] == "ok"
    assert "make all: 4 ok, 4 skipped, 0 failed -> ok" in out
    assert "Traceback" not in out
    assert [c["target"] for c in calls() if not c["dry"]] == ["venv"]


def test_h100_runs_hopper_then_verify_and_a_failed_verdict_fails(fakes, capsys):
    setup, calls, argv, tmp = fakes
    setup({**ALL_TARGETS, "verify": 1})
    assert run_all.main(argv(), detect=h100) == 1
    parts = summary_of(tmp)
    assert "hopper" in parts and "fig7" not in parts
    assert parts["verify"]["status"] == "FAILED"
    assert "verdict failed" in parts["verify"]["note"]
    real = [c for c in calls() if not c["dry"]]
    assert [c["target"] for c in real] == ["venv", "hopper", "fig11", "table5", "check-saved",
                                           "verify"]
    assert all("GPU=h100" in c["vars"] for c in real[1:])
    out = capsys.readouterr().out
    assert "1 failed -> FAILED" in out


def test_a100_runs_fig7_with_the_options_passed_on(fakes):
    setup, calls, argv, tmp = fakes
    setup(ALL_TARGETS)
    assert run_all.main(argv("--force-gpu", "--resume", "--gpu", "a100"), detect=h100) == 0
    fig = [c for c in calls() if c["target"] == "fig7" and not c["dry"]]
    assert fig and {"GPU=a100", "FORCE_GPU=1", "RESUME=1"} <= set(fig[0]["vars"])
    assert run_all.main(argv(), detect=a100) == 0


def test_a_failing_part_does_not_stop_the_rest(fakes, capsys):
    setup, calls, argv, tmp = fakes
    setup({**ALL_TARGETS, "fig11": 3})
    assert run_all.main(argv(), detect=h100) == 1
    parts = summary_of(tmp)
    assert parts["fig11"]["status"] == "FAILED" and "exit 3" in parts["fig11"]["note"]
    assert all(parts[p]["status"] == "ok" for p in ("table5", "check-saved", "verify"))
    log = Path(parts["fig11"]["note"].split("log: ")[1])
    assert "fake fig11 running" in (run_all.ROOT / log if not log.is_absolute() else log) \
        .read_text()


def test_skip_only_and_unknown_parts(fakes, capsys):
    setup, calls, argv, tmp = fakes
    setup(ALL_TARGETS)
    assert run_all.main(argv("--skip", "check-saved,fig11"), detect=h100) == 0
    parts = summary_of(tmp)
    assert parts["check-saved"]["note"] == parts["fig11"]["note"] == "SKIP= names it"
    capsys.readouterr()
    assert run_all.main(argv("--only", "fig8"), detect=h100) == 2  # one error line (issue 15)
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "unknown part(s) fig8" in err and err.count("\n") == 1


def test_only_runs_the_named_parts(fakes):
    setup, calls, argv, tmp = fakes
    setup(ALL_TARGETS)
    assert run_all.main(argv("--only", "fig7,verify"), detect=h100) == 0  # fig7 names hopper too
    parts = summary_of(tmp)
    ran = [p for p, o in parts.items() if o["status"] == "ok"]
    assert ran == ["setup", "hopper", "verify"]


def test_from_scratch_adds_the_search(fakes):
    setup, calls, argv, tmp = fakes
    setup(ALL_TARGETS)
    assert run_all.main(argv("--from-scratch"), detect=no_gpu) == 0
    parts = summary_of(tmp)
    assert parts["search"]["status"] == "skipped"
    assert "'search-saved'" in parts["search"]["note"]
    assert all("FROM_SCRATCH=1" in c["vars"] for c in calls() if c["target"] != "venv")
    setup({**ALL_TARGETS, "search-saved": 0})
    assert run_all.main(argv("--from-scratch"), detect=no_gpu) == 0
    assert [c["target"] for c in calls() if not c["dry"]][-4:] == ["venv", "search-saved",
                                                                   "table5", "check-saved"]


def test_quick_runs_a_reduced_table5_unless_told_otherwise(fakes, monkeypatch):
    setup, calls, argv, tmp = fakes
    setup(ALL_TARGETS)
    assert run_all.main(argv("--quick"), detect=no_gpu) == 0
    (t5,) = [c for c in calls() if c["target"] == "table5" and not c["dry"]]
    assert run_all.QUICK_TABLE5 in t5["vars"] and "QUICK=1" in t5["vars"]
    monkeypatch.setenv("MAKEFLAGS", " -- TABLE5_ARGS=--ops\\ 5")
    assert run_all.main(argv("--quick"), detect=no_gpu) == 0
    t5 = [c for c in calls() if c["target"] == "table5" and not c["dry"]][-1]
    assert run_all.QUICK_TABLE5 not in t5["vars"]


def test_part_timeout(fakes, tmp_path):
    setup, calls, argv, tmp = fakes
    setup(ALL_TARGETS)
    slow = _script(tmp_path / "slow", "#!/bin/sh\nsleep 30\n")
    opts = Options(make=slow, part_timeout=1)
    outcome = run_all.run_step(opts, run_all.Step("table5", command=[slow]), [], tmp_path)
    assert outcome.status == "FAILED" and "ran past 1 s" in outcome.note
    # An interrupt comes first: a part that handles it finishes its own way.
    polite = _script(tmp_path / "polite", f"""#!{sys.executable}
import time
try:
    time.sleep(30)
except KeyboardInterrupt:
    print("kept 3 records")
""")
    outcome = run_all.run_step(opts, run_all.Step("fig7", command=[polite]), [], tmp_path)
    assert outcome.status == "FAILED" and "kept 3 records" in (tmp_path / "fig7.log").read_text()


def test_setup_failure_stops_cleanly(fakes, capsys):
    setup, calls, argv, tmp = fakes
    setup(ALL_TARGETS)
    os.environ["FAKE_MAKE_SPEC"] = json.dumps({"targets": {"venv": 1},
                                               "log": str(tmp / "make.jsonl")})
    assert run_all.main(argv(), detect=h100) == 1
    out = capsys.readouterr().out
    assert re.search(r"setup +FAILED +\d+ s +make venv: exit 1", out)
    assert "Traceback" not in out


@pytest.mark.parametrize("error, code, word", [(RuntimeError("boom"), 1, "internal error"),
                                               (KeyboardInterrupt(), 130, "interrupted")])
def test_never_a_traceback(fakes, capsys, error, code, word):
    setup, calls, argv, tmp = fakes
    setup(ALL_TARGETS)

    def detect(opts):
        raise error

    assert run_all.main(argv(), detect=detect) == code
    out = capsys.readouterr()
    assert word in out.out and "Traceback" not in out.out + out.err
    assert json.loads(next((tmp / "out").iterdir()).joinpath("summary.json").read_text())[
        "exit_code"] == code


def test_environment_recorded_by_the_image_is_not_recorded_twice(fakes, monkeypatch):
    setup, calls, argv, tmp = fakes
    setup(ALL_TARGETS)
    monkeypatch.setenv("MIRAGE_ENV_RECORD", "results/environment/x.json")
    assert run_all.main(argv(), detect=no_gpu) == 0
    assert "entrypoint" in summary_of(tmp)["environment"]["note"]
    assert "run_all_parts env" not in (tmp / "python.log").read_text()


def test_verify_runs_on_cpu_when_results_were_copied_here(tmp_path):
    steps = {s.part: s for s in run_all.plan(Options(), Gpu(None, None, "no"), "python",
                                             tmp_path / "env.json", results=tmp_path)}
    assert steps["verify"].skip
    (tmp_path / "fig11" / "h100").mkdir(parents=True)
    (tmp_path / "fig11" / "h100" / "metadata.json").write_text("{}")
    (tmp_path / "h100").mkdir()
    (tmp_path / "h100" / "metadata.json").write_text("{}")
    steps = {s.part: s for s in run_all.plan(Options(), Gpu(None, None, "no"), "python",
                                             tmp_path / "env.json", results=tmp_path)}
    assert steps["verify"].skip is None
    assert steps["verify"].note == "results measured elsewhere: fig11/h100, h100"
    assert steps["fig7"].skip and steps["fig11"].skip


# --- Docker -------------------------------------------------------------------------------------


def fake_bin(tmp_path: Path, monkeypatch, docker: str | None, nvidia_smi: bool) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if docker is not None:
        _script(bin_dir / "docker", docker)
    if nvidia_smi:
        _script(bin_dir / "nvidia-smi", "#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3'\n")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.delenv("MIRAGE_IN_DOCKER", raising=False)


GOOD_DOCKER = """#!/bin/sh
case "$1" in
  info) echo 28.2.2 ;;
  image) echo sha256:abc ;;
  run) echo 'GPU 0: NVIDIA H100 80GB HBM3' ;;
esac
"""


@pytest.mark.parametrize("docker, smi, use, why", [
    (None, True, False, "no docker command"),
    ("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n", True, False,
     "no Docker engine reachable"),
    (GOOD_DOCKER, False, False, "no NVIDIA GPU on this host"),
    (GOOD_DOCKER.replace("image) echo sha256:abc", "image) exit 1"), True, False,
     "not built here (make docker builds it)"),
    (GOOD_DOCKER.replace("run) echo", "run) exit 125; echo"), True, False,
     "NVIDIA Container Toolkit"),
    (GOOD_DOCKER, True, True, "GPU visible in the container"),
])
def test_docker_decision(tmp_path, monkeypatch, docker, smi, use, why):
    fake_bin(tmp_path, monkeypatch, docker, smi)
    got, reason = run_all.docker_decision(Options(image="mirage-ae:0.1.0"), env={})
    assert got is use and why in reason


def test_docker_decision_never_and_inside(tmp_path, monkeypatch):
    fake_bin(tmp_path, monkeypatch, GOOD_DOCKER, True)
    assert run_all.docker_decision(Options(docker="never"), env={}) == (False, "DOCKER=never")
    assert run_all.docker_decision(Options(), env={"MIRAGE_IN_DOCKER": "1"})[1] == \
        "already inside the image"


def test_docker_run_command_mounts_results_and_repeats_the_options(tmp_path, monkeypatch):
    monkeypatch.setattr(run_all, "ROOT", tmp_path)
    opts = Options(quick=True, gpu="h100", skip=frozenset({"table5"}), image="mirage-ae:0.1.0")
    cmd = run_all.docker_command(opts)
    assert cmd[:6] == ["docker", "run", "--rm", "--gpus", "all", "--ipc=host"]
    assert f"{tmp_path}/results:/workspace/results" in cmd
    tail = cmd[cmd.index("mirage-ae:0.1.0"):]
    assert tail == ["mirage-ae:0.1.0", "make", "all", "DOCKER=never", "GPU=h100", "QUICK=1",
                    "SKIP=table5"]
    assert (tmp_path / "results").is_dir()


def test_docker_always_refuses_without_the_image(tmp_path, monkeypatch, capsys):
    fake_bin(tmp_path, monkeypatch, None, False)
    assert run_all.main(["--docker", "always", "--out", str(tmp_path / "o")]) == 1
    assert "DOCKER=always, but the image cannot be used: no docker command" in \
        capsys.readouterr().err


def test_docker_path_runs_make_all_in_the_image(tmp_path, monkeypatch, capsys):
    log = tmp_path / "docker.log"
    fake_bin(tmp_path, monkeypatch, GOOD_DOCKER.replace(
        "run) echo", f'run) echo "$@" >> {log}; echo'), True)
    monkeypatch.setattr(run_all, "ROOT", tmp_path)
    assert run_all.main(["--image", "mirage-ae:0.1.0", "--quick"]) == 0
    runs = log.read_text().splitlines()
    assert runs[-1].endswith("mirage-ae:0.1.0 make all DOCKER=never QUICK=1")
    assert "inside the image" in capsys.readouterr().out
