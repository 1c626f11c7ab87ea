"""``make verify``: compare every published run in results/ with expected/.

For each results/<gpu>/ (Figure 7) and results/fig11/<gpu>/ (Figure 11) (or only ``--gpu``'s):
refuse an incomplete run or one measured with other code than the current tree (stale;
``--allow-stale`` to check it anyway), print the table (case, b, measured, expected band, paper
claim, verdict; Figure 11 adds the issue's target) and exit 1 if any band is missed, any banded
case is missing, or Mirage was wrong. ``--adopt --gpu h100`` writes the runs' speedups into
expected/reference_bands.json (Figure 7) and expected/fig11_bands.json (Figure 11) as that GPU's
reference bands (with provenance).

A rehearsal (``python -m scripts.fig7 --rehearse a100``: results/a100-rehearsal/, metadata
``rehearsal``) is not judged against bands (none exist for it; the card it ran on is not the one
it rehearses): verify checks its records like any run's, that its marker names the folder and
the card it ran on, and that every Mirage row is correct (status ok), and lists it as
"rehearsal: not judged against bands".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mirage.ir.serialize import atomic_write_text
from scripts.harness import checker, cli, endtoend_report, sanity
from scripts.harness.analysis import speedups
from scripts.harness.lock import LockHeld, RunLock
from scripts.harness.metadata import MEASURED_CODE, code_fingerprint, gpu_slug
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


REHEARSAL_SUFFIX = "-rehearsal"


def rehearsal_problems(directory: Path, meta: dict) -> list[str]:
    """What makes a rehearsal run's marker inconsistent (empty: consistent)."""
    r = _dict(meta.get("rehearsal"))
    card, on = r.get("as"), r.get("on")
    out = []
    if not isinstance(card, str) or meta.get("gpu") != f"{card}{REHEARSAL_SUFFIX}":
        out.append(f"metadata.json: field rehearsal.as: {card!r} does not name the folder "
                   f"{meta.get('gpu')!r}")
    name = _dict(meta.get("gpu_info")).get("name")
    if not isinstance(on, str) or on != name:
        out.append(f"metadata.json: field rehearsal.on: {on!r} but gpu_info.name is {name!r}")
    elif isinstance(card, str) and gpu_slug(on) == card:
        out.append(f"metadata.json: a rehearsal of {card} on an {card} card")
    if meta.get("gpu_override"):
        out.append("metadata.json: a rehearsal with a GPU override")
    proposed = directory / "proposed_bands.json"
    if proposed.exists():
        try:
            gpus = {b.get("gpu") for b in json.loads(proposed.read_text())}
        except (OSError, ValueError, AttributeError, TypeError) as e:
            out.append(f"proposed_bands.json: unreadable ({type(e).__name__})")
        else:
            if gpus - {meta.get("gpu")}:
                out.append(f"proposed_bands.json: bands for {sorted(map(str, gpus))}, not only "
                           f"{meta.get('gpu')!r}")
    return out


def check_rehearsal(directory: Path, meta: dict, records) -> bool:
    """Print a rehearsal's verdict (never against bands); True if it failed."""
    print(f"  REHEARSAL ({str(_dict(meta.get('rehearsal')).get('as')).upper()} limits and "
          f"µGraphs on {_dict(meta.get('rehearsal')).get('on')})")
    rows = [r for r in records if r.implementation == "mirage"]
    bad = [r for r in rows if r.status != "ok"]
    for r in rows:
        print(f"  {r.case:<9} b={r.batch:<3} mirage: {r.status}"
              + (f" ({r.median_us:.2f} us)" if r.median_us is not None else "")
              + (f": {r.error}" if r.error else ""))
    print(f"  rehearsal: not judged against bands; {len(rows) - len(bad)} of {len(rows)} "
          f"Mirage rows correct")
    if bad:
        print(f"{PROG}: {directory}: rehearsal FAILED: {len(bad)} Mirage row(s) not ok: "
              + ", ".join(f"{r.case} b={r.batch} {r.status}" for r in bad), file=sys.stderr)
    if not rows:
        print(f"{PROG}: {directory}: rehearsal FAILED: no Mirage row", file=sys.stderr)
    return bool(bad) or not rows


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
            rehearsal = meta.get("rehearsal") is not None or directory.name.endswith(
                REHEARSAL_SUFFIX)
            if rehearsal:
                problems = rehearsal_problems(directory, meta)
                if problems:
                    raise ResultsError(f"{directory}: " + "; ".join(problems))
                # Filed under <card>-rehearsal by design, not by override: the sanity checks
                # compare the folder with the card's name, so they see the card it ran on.
                sanity.check_run(directory, {**meta, "gpu_override": {
                    "requested": meta["gpu"], "rehearsal": meta["rehearsal"]}}, records,
                    FIG11 if figure == FIG11 else "fig7")
            else:
                sanity.check_run(directory, meta, records,
                                 FIG11 if figure == FIG11 else "fig7")
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
        if rehearsal:
            failed |= check_rehearsal(directory, meta, records)
            continue
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
