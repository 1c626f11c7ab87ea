"""``make verify``: compare every published run in results/ with expected/.

For each results/<gpu>/ (or only ``--gpu``): refuse an incomplete run or one measured with other
code than the current tree (stale; ``--allow-stale`` to check it anyway), print the table (case,
b, measured, expected band, paper claim, verdict) and exit 1 if any band is missed, any banded
case is missing, or Mirage was wrong. ``--adopt --gpu h100`` writes the run's speedups into
expected/reference_bands.json as that GPU's reference bands (with provenance).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mirage.ir.serialize import atomic_write_text
from scripts.harness import checker
from scripts.harness.analysis import speedups
from scripts.harness.metadata import MEASURED_CODE, code_fingerprint
from scripts.harness.records import METADATA, RECORDS, ResultsError, load_run

PROG = "verify"


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m scripts.verify", description=__doc__)
    p.add_argument("--gpu", default=None, help="check only results/<gpu>")
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--expected", type=Path, default=Path("expected"))
    p.add_argument("--allow-stale", action="store_true",
                   help="check results measured with other code than the current tree")
    p.add_argument("--adopt", action="store_true",
                   help="write this run's speedups as --gpu's bands into expected/")
    return p.parse_args(argv)


def result_dirs(results: Path, gpu: str | None) -> list[Path]:
    if gpu:
        return [results / gpu.lower()]
    if not results.is_dir():
        return []
    return sorted(d for d in results.iterdir() if d.is_dir() and not d.name.startswith(".")
                  and ((d / METADATA).exists() or (d / RECORDS).exists()))


def stale_reason(meta: dict, root: Path = Path(".")) -> str | None:
    """Why the run's results no longer describe the current code, or None."""
    code = meta.get("code", {})
    paths = tuple(code.get("fingerprint_paths") or MEASURED_CODE)
    if code.get("fingerprint") != code_fingerprint(root, paths):
        return (f"measured with other code than the current tree (something under "
                f"{', '.join(paths)} changed since commit {meta.get('commit')})")
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.adopt and not args.gpu:
        print(f"{PROG}: --adopt needs --gpu", file=sys.stderr)
        return 2
    dirs = result_dirs(args.results, args.gpu)
    if not dirs:
        print(f"{PROG}: no results under {args.results}/ (run `make fig7 GPU=...` or "
              "`make hopper` first)", file=sys.stderr)
        return 1
    try:
        claims = checker.load_claims(args.expected)
        bands = checker.load_bands(args.expected)
    except checker.ExpectedError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    failed = False
    for directory in dirs:
        try:
            meta, records = load_run(directory)
        except ResultsError as e:
            print(f"{PROG}: cannot trust {e}; rerun the measurement", file=sys.stderr)
            failed = True
            continue
        gpu = meta["gpu"]
        print(f"\n{directory}: {meta.get('gpu_info', {}).get('name', gpu)}, run "
              f"{meta.get('run_id')}, commit {meta.get('commit')}, {meta.get('started')}")
        if meta.get("gpu_override"):
            print(f"  filed as {gpu} by override (NVML: "
                  f"{meta['gpu_override'].get('reported_name')})")
        if meta.get("code", {}).get("dirty_paths"):
            print("  note: measured from uncommitted changes: "
                  + ", ".join(meta["code"]["dirty_paths"]))
        stale = stale_reason(meta)
        if stale and not args.allow_stale:
            print(f"{PROG}: {directory} is stale: {stale}; rerun it, or pass --allow-stale",
                  file=sys.stderr)
            failed = True
            continue
        if stale:
            print(f"  STALE (checked anyway): {stale}")
        measured = speedups(records)
        if args.adopt:
            proposed = checker.propose_bands(meta, measured)
            atomic_write_text(args.expected / checker.BANDS_FILE,
                              checker.adopt(args.expected, gpu, proposed))
            print(f"  adopted {len(proposed)} bands for {gpu} into "
                  f"{args.expected / checker.BANDS_FILE}")
            bands = checker.load_bands(args.expected)
        rows = checker.check(gpu, measured, bands, claims)
        print(checker.render(rows))
        counts = {v: sum(r.verdict == v for r in rows) for v in dict.fromkeys(
            r.verdict for r in rows)}
        print("  " + ", ".join(f"{n} {v}" for v, n in counts.items()))
        failed |= checker.failed(rows)
    print(f"\n{PROG}: {'FAILED' if failed else 'ok'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
