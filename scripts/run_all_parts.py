"""Two parts of ``make all`` that need no GPU (run in .venv by ``scripts/run_all.py``).

``python -m scripts.run_all_parts env --out FILE`` records the machine and its software as JSON:
host, CPU, memory, Python, the GPUs ``nvidia-smi`` lists (name, UUID, driver, clocks, power
limit), library versions (``scripts.harness.metadata``), ``pip freeze``, the git commit and, in
the image, which optional baselines installed. The image's entrypoint runs it before any
command; a native ``make all`` runs it first.

``python -m scripts.run_all_parts reference`` runs the checker of ``make verify`` on what we
ship in ``expected/``: the paper's claims and our reference bands must load, every Figure 7
(case, b) of the A100 and H100 runs must have a band, and every measured band must hold the
measurement it was adopted from (its provenance: Mirage and best-baseline medians). It prints
the same table ``make verify`` prints, with the reference run in the "measured" column, so a
machine without a GPU shows what a verdict looks like and that the shipped data is sound.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINES_RECORD = Path("/opt/mirage/baselines.txt")  # written by docker/install_baselines.sh
NVIDIA_QUERY = ("index,name,uuid,driver_version,memory.total,clocks.max.sm,clocks.max.mem,"
                "power.limit,pstate,temperature.gpu")


def _run(cmd: list[str], timeout: float = 120) -> tuple[int, str]:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, errors="replace", cwd=ROOT,
                           timeout=timeout)
    except (OSError, subprocess.SubprocessError) as e:
        return 127, f"{type(e).__name__}: {e}"
    return p.returncode, (p.stdout or "") + (p.stderr or "")


def _lines(text: str) -> list[str]:
    return [x for x in text.strip().splitlines() if x.strip()]


def _last(text: str) -> str:
    lines = _lines(text)
    return lines[-1].strip() if lines else "no output"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    return None


def environment() -> dict:
    """What this run ran on, as data."""
    from scripts.harness import metadata

    rec = {
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": metadata.host_info()["cpu"],
        "cpus": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "image": {"inside": bool(os.environ.get("MIRAGE_IN_DOCKER")),
                  "name": os.environ.get("MIRAGE_IMAGE"),
                  "built_from_commit": os.environ.get("MIRAGE_GIT_COMMIT")},
    }
    if BASELINES_RECORD.is_file():
        rec["image"]["optional_baselines"] = _lines(BASELINES_RECORD.read_text())
    code, out = _run(["nvidia-smi", f"--query-gpu={NVIDIA_QUERY}", "--format=csv"])
    rec["nvidia_smi"] = _lines(out) if code == 0 else f"not available: {_last(out)}"
    try:
        rec["software"] = metadata.software_versions()
    except Exception as e:  # a broken torch install is a fact to record, not a crash
        rec["software"] = f"not available: {type(e).__name__}: {e}"
    rec["code"] = metadata.code_provenance(ROOT)
    code, out = _run([sys.executable, "-m", "pip", "freeze"])
    rec["pip_freeze"] = _lines(out) if code == 0 else f"not available: {_last(out)}"
    return rec


def env_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.run_all_parts env")
    p.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    args = p.parse_args(argv)
    rec = environment()
    from mirage.ir.serialize import atomic_write_text

    try:
        atomic_write_text(args.out, json.dumps(rec, indent=1) + "\n")
    except OSError as e:
        print(f"environment: cannot write {args.out} ({e})", file=sys.stderr)
        return 1
    smi = rec["nvidia_smi"]
    gpus = smi[1:] if isinstance(smi, list) else ["none (no nvidia-smi)"]
    sw = rec["software"] if isinstance(rec["software"], dict) else {}
    print(f"environment: {rec['hostname']}, {rec['cpus']} CPUs ({rec['cpu']}), "
          f"{rec['memory_gib']} GiB, Python {rec['python']}", file=sys.stderr)
    print(f"environment: torch {sw.get('torch')} (CUDA {sw.get('cuda')}), triton "
          f"{sw.get('triton')}; GPUs: {'; '.join(gpus)}", file=sys.stderr)
    if rec["image"]["inside"]:
        print(f"environment: image {rec['image']['name']}; optional baselines: "
              f"{'; '.join(rec['image'].get('optional_baselines', ['no record']))}",
              file=sys.stderr)
    print(args.out)
    return 0


# --- the checker on expected/ -------------------------------------------------------------------


def reference_problems(expected: Path) -> tuple[list[str], list[str]]:
    """(what the checker printed, what is wrong with expected/)."""
    from scripts.harness import checker
    from scripts.harness import records as rec
    from scripts.harness.analysis import Speedup
    from scripts.harness.cases import BATCHES_A100, BATCHES_HOPPER, CASES

    try:
        claims = checker.load_claims(expected)
        bands = checker.load_bands(expected)
    except checker.ExpectedError as e:
        return [], [str(e)]
    printed = [f"expected/: {len(claims)} paper claims, {len(bands)} reference bands"]
    problems = []
    for gpu, batches in (("a100", BATCHES_A100), ("h100", BATCHES_HOPPER)):
        problems += [f"no band for {gpu} {case} b={b}" for case in CASES for b in batches
                     if (gpu, case, b) not in bands]
    problems += [f"claim {c.id}: unknown case {c.case}" for c in claims
                 if c.case is not None and c.figure == "fig7" and c.case not in CASES]
    for gpu in sorted({g for g, _, _ in bands}):
        measured = {}
        for (g, case, b), band in bands.items():
            if g != gpu or band.status != checker.MEASURED:
                continue
            prov = band.provenance or {}
            if prov.get("mirage_us") is None or prov.get("best_baseline_us") is None:
                problems.append(f"{gpu} {case} b={b}: a measured band without the Mirage and "
                                "best-baseline medians it came from")
                continue
            s = Speedup(case, b, prov.get("best_baseline"), prov["best_baseline_us"], rec.OK,
                        prov["mirage_us"])
            if band.speedup and abs(s.speedup - band.speedup) > 1e-3 * band.speedup:
                problems.append(f"{gpu} {case} b={b}: band speedup {band.speedup} disagrees "
                                f"with its provenance ({s.speedup:.4f})")
            measured[(case, b)] = s
        rows = checker.check(gpu, measured, bands, claims)
        done = sum(r.band is not None and r.band.status == checker.MEASURED for r in rows)
        printed.append(f"\n{gpu}: {done} of {len(rows)} bands measured (the reference run is "
                       "the 'measured' column)")
        printed.append(checker.render(rows))
        problems += [f"{gpu} {r.case} b={r.batch}: the reference run itself gives {r.verdict}"
                     for r in rows if r.verdict in checker.FAILING]
    return printed, problems


def reference_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.run_all_parts reference")
    p.add_argument("--expected", type=Path, default=ROOT / "expected")
    args = p.parse_args(argv)
    printed, problems = reference_problems(args.expected)
    print("\n".join(printed))
    for problem in problems:
        print(f"reference: {problem}", file=sys.stderr)
    print(f"\nreference: {'FAILED' if problems else 'ok'} ({len(problems)} problems)")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"env": env_main, "reference": reference_main}
    if not argv or argv[0] not in commands:
        print("usage: python -m scripts.run_all_parts {env --out FILE | reference}",
              file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
