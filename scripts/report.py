"""Redraw the table and the figure of a published run from its records:
``python -m scripts.report results/h100``. Measures nothing; waits for no one: a run that holds
the directory's lock (``scripts/harness/lock.py``) makes it refuse. Exit status: 0 redrawn, 1 the
run cannot be trusted, 2 bad input, 5 the directory is in use."""

from __future__ import annotations

import sys
from pathlib import Path

from mirage.ir.serialize import atomic_write_text
from scripts.harness import cli, plot, report
from scripts.harness.lock import LockHeld, RunLock
from scripts.harness.records import ResultsError, atomic_write_bytes, load_run

PROG = "report"


def main(argv=None) -> int:
    try:
        p = cli.Parser(prog="python -m scripts.report", description=__doc__)
        p.add_argument("directory", type=Path, help="a results/<gpu> directory")
        args = p.parse_args(argv)
        if not args.directory.is_dir():
            raise cli.UsageError(f"{args.directory} is not a directory")
        with RunLock.for_dir(args.directory, [f"python -m scripts.{PROG}", str(args.directory)]):
            return _redraw(args.directory)
    except cli.UsageError as e:
        return cli.fail(PROG, e)
    except LockHeld as e:
        return cli.fail(PROG, e, cli.BUSY)
    except KeyboardInterrupt:
        return cli.fail(PROG, "interrupted; each file is either the old or the new one",
                        cli.INTERRUPTED)


def _redraw(directory: Path) -> int:
    try:
        meta, records = load_run(directory)
    except ResultsError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    text = report.table(meta, records)
    atomic_write_text(directory / "table.txt", text)
    info = meta.get("gpu_info") if isinstance(meta.get("gpu_info"), dict) else {}
    name = info.get("name", meta.get("gpu"))
    atomic_write_bytes(directory / "fig7.png",
                       plot.render(records, f"Mirage vs best baseline on {name} "
                                            f"(run {meta.get('run_id')})"))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
