"""Helpers of the search and CLI hostile-input tests: a tiny program, the command line run
in-process, a finished tiny search (``make_finished``, for a module-scoped fixture) and private
copies of its files (``copy_finished``)."""

import json
import os
import shutil
from pathlib import Path

import mirage
from mirage.cli import main
from mirage.ir import save
from mirage.workloads import PROGRAMS

SMALL_RMS = {"X": (4, 64), "W": (64, 64)}
TINY_RMS = {"X": (4, 32), "W": (32, 16)}  # a search of ~40 candidates, a 45 kB checkpoint
TINY_FLAGS = ["--workers", "1", "--max-block-ops", "3", "--keep", "2", "--time-budget", "60"]


def tiny_program():
    return PROGRAMS["rmsnorm"](TINY_RMS)


def subprocess_env() -> dict:
    """The environment for a child Python that must import this same ``mirage``."""
    root = str(Path(mirage.__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [root, *filter(None, [os.environ.get("PYTHONPATH")])])}


def run_cli(capsys, *argv):
    """(exit status, stdout, stderr) of ``python -m mirage ARGV`` run in this process."""
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def error_line(err: str) -> str:
    """The one line a refusal prints; fails the test unless stderr is exactly that line."""
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]



def search_argv(paths, *extra):
    return ["search", "--program", paths["program"], "--out", paths["out"], "--checkpoint",
            paths["checkpoint"], *TINY_FLAGS, *extra]


def make_finished(tmp_path_factory):
    """A finished tiny search through the CLI: its program file, checkpoint and --out."""
    root = tmp_path_factory.mktemp("finished")
    prog = root / "prog.json"
    save(prog, [tiny_program()])
    out, ckpt = root / "out.json", root / "search.ckpt"
    rc = main(["search", "--program", str(prog), "--out", str(out), "--checkpoint", str(ckpt),
               *TINY_FLAGS])
    assert rc == 0
    return {"program": prog, "out": out, "checkpoint": ckpt,
            "doc": json.loads(ckpt.read_text())}


def copy_finished(tmp_path, finished):
    """A private copy of the finished search's files in ``tmp_path``."""
    paths = {}
    for name in ("program", "out", "checkpoint"):
        paths[name] = tmp_path / finished[name].name
        shutil.copy(finished[name], paths[name])
    paths["doc"] = json.loads(json.dumps(finished["doc"]))
    return paths
