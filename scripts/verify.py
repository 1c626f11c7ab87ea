"""``make verify``: compare every published run in results/ with expected/.

For each results/<gpu>/ (Figure 7) and results/fig11/<gpu>/ (Figure 11) (or only ``--gpu``'s):
refuse an incomplete run or one measured with other code than the current tree (stale;
``--allow-stale`` to check it anyway), print the table (case, b, measured, expected band, paper
claim, verdict; Figure 11 adds the issue's target) and exit 1 if any band is missed, any banded
case is missing, or Mirage was wrong. ``--adopt --gpu h100`` writes the runs' speedups into
expected/reference_bands.json (Figure 7) and expected/fig11_bands.json (Figure 11) as that GPU's
reference bands (with provenance).
"""

from __future__ import annotations

import sys
from pathlib import Path

from mirage.ir.serialize import atomic_write_text
from scripts.harness import checker, cli, endtoend_report, sanity
from scripts.harness.analysis import speedups
from scripts.harness.lock import LockHeld, RunLock
from scripts.harness.metadata import MEASURED_CODE, code_fingerprint
from scripts.harness.records import METADATA, RECORDS, ResultsError, load_run

PROG = "verify"


def parse_args(argv):
    p = cli.Parser(prog="python -m scripts.verify", description=__doc__)
    p.add_argument("--gpu", default=None, help="check only results/<gpu> "
                                               f"({', '.join(cli.KNOWN_GPUS)})")
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--expected", type=Path, default=Path("expected"))
    p.add_argument("--allow-stale", action="store_true",
                   help="check results measured with other code than the current tree")
    p.add_argument("--adopt", action="store_true",
                   help="write this run's speedups as --gpu's bands into expected/")
    args = p.parse_args(argv)
    args.gpu = cli.gpu_name(args.gpu)
    return args


def result_dirs(results: Path, gpu: str | None) -> list[Path]:
    if gpu:
        return [results / gpu.lower()]
    if not results.is_dir():
        return []
    return sorted(d for d in results.iterdir() if d.is_dir() and not d.name.startswith(".")
                  and d.name != FIG11 and ((d / METADATA).exists() or (d / RECORDS).exists()))


FIG11 = "fig11"  # results/fig11/<gpu>/: scripts/fig11.py's runs


def runs(results: Path, gpu: str | None) -> list[tuple[str, Path]]:
    """(figure, directory) of every run to check. With ``gpu``, its Figure 11 run where one
    exists, and its Figure 7 directory unless only a Figure 11 run is there."""
    fig11 = [(FIG11, d) for d in result_dirs(results / FIG11, gpu)
             if not gpu or d.exists()]
    fig7 = [("fig7", d) for d in result_dirs(results, gpu)
            if not gpu or d.exists() or not fig11]
    return fig7 + fig11


def _dict(x) -> dict:
    return x if isinstance(x, dict) else {}


def stale_reason(meta: dict, root: Path = Path(".")) -> str | None:
    """Why the run's results no longer describe the current code, or None."""
    code = _dict(meta.get("code"))
    paths = code.get("fingerprint_paths") or MEASURED_CODE
    if not isinstance(paths, (list, tuple)) or not all(isinstance(x, str) for x in paths):
        return "its metadata names no valid code paths"
    paths = tuple(paths)
    if code.get("fingerprint") != code_fingerprint(root, paths):
        return (f"measured with other code than the current tree (something under "
                f"{', '.join(paths)} changed since commit {meta.get('commit')})")
    return None


def main(argv=None) -> int:
    """The verdict: 0 every check held, 1 a check failed or a run cannot be trusted, 2 bad
    input (one ``error:`` line), 130 interrupted."""
    try:
        return _main(argv)
    except cli.UsageError as e:
        return cli.fail(PROG, e)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing adopted or changed", file=sys.stderr)
        return cli.INTERRUPTED
    except LockHeld as e:
        return cli.fail(PROG, e, cli.BUSY)
    except Exception as e:  # a verdict, never a traceback
        print(f"{PROG}: FAILED: internal error ({type(e).__name__}: {e})", file=sys.stderr)
        return 1


def _main(argv) -> int:
    args = parse_args(argv)
    if args.adopt and not args.gpu:
        raise cli.UsageError("--adopt needs --gpu")
    if not args.results.is_dir():
        raise cli.UsageError(f"no results directory {args.results}/ (run `make fig7 GPU=...`, "
                             "`make hopper` or `make fig11` first)")
    if not args.expected.is_dir():
        raise cli.UsageError(f"no expected directory {args.expected}/")
    dirs = runs(args.results, args.gpu)
    if not dirs:
        print(f"{PROG}: no results under {args.results}/ (run `make fig7 GPU=...`, "
              "`make hopper` or `make fig11` first)", file=sys.stderr)
        return 1
    bands_file = {"fig7": checker.BANDS_FILE, FIG11: endtoend_report.BANDS_FILE}
    try:  # each figure's bands are read when a run of it is checked
        claims = checker.load_claims(args.expected)
        all_bands = {f: checker.load_bands(args.expected, bands_file[f])
                     for f in dict.fromkeys(f for f, _ in dirs)}
    except checker.ExpectedError as e:
        raise cli.UsageError(str(e)) from None
    failed = False
    for figure, directory in dirs:
        bands = all_bands[figure]
        try:
            meta, records = load_run(directory)
            if meta["gpu"] != directory.name:
                raise ResultsError(f"{directory}: holds a run of {meta['gpu']!r} (field gpu of "
                                   f"{METADATA})")
            sanity.check_run(directory, meta, records, FIG11 if figure == FIG11 else "fig7")
        except ResultsError as e:
            print(f"{PROG}: cannot trust {e}; rerun the measurement", file=sys.stderr)
            failed = True
            continue
        gpu = meta["gpu"]
        print(f"\n{directory} ({'Figure 11' if figure == FIG11 else 'Figure 7'}): "
              f"{_dict(meta.get('gpu_info')).get('name', gpu)}, run "
              f"{meta.get('run_id')}, commit {meta.get('commit')}, {meta.get('started')}")
        if meta.get("gpu_override"):
            print(f"  filed as {gpu} by override (NVML: "
                  f"{_dict(meta['gpu_override']).get('reported_name')})")
        if _dict(meta.get("code")).get("dirty_paths"):
            print("  note: measured from uncommitted changes: "
                  + ", ".join(map(str, meta["code"]["dirty_paths"])))
        stale = stale_reason(meta)
        if stale and not args.allow_stale:
            print(f"{PROG}: {directory} is stale: {stale}; rerun it, or pass --allow-stale",
                  file=sys.stderr)
            failed = True
            continue
        if stale:
            print(f"  STALE (checked anyway): {stale}")
        measured = (endtoend_report.speedups(records) if figure == FIG11
                    else speedups(records))
        if args.adopt:
            name = bands_file[figure]
            try:
                with RunLock.for_dir(args.expected / name):
                    proposed = checker.propose_bands(meta, measured)
                    text = checker.adopt(args.expected, gpu, proposed, name)
                    atomic_write_text(args.expected / name, text)
                    bands = checker.load_bands(args.expected, name)
            except checker.ExpectedError as e:
                print(f"{PROG}: {e}", file=sys.stderr)
                failed = True
                continue
            print(f"  adopted {len(proposed)} bands for {gpu} into {args.expected / name}")
        planned = _dict(meta.get("plan")).get("batches")  # QUICK=1 plans b = 1 only
        if figure == FIG11:
            rows = endtoend_report.check(gpu, records, bands, claims, planned)
            print(endtoend_report.render_check(rows))
        else:
            rows = checker.check(gpu, measured, bands, claims, planned)
            print(checker.render(rows))
        counts = {v: sum(r.verdict == v for r in rows) for v in dict.fromkeys(
            r.verdict for r in rows)}
        print("  " + ", ".join(f"{n} {v}" for v, n in counts.items()))
        failed |= checker.failed(rows)
    print(f"\n{PROG}: {'FAILED' if failed else 'ok'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
