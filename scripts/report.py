"""Redraw the table and the figure of a published run from its records:
``python -m scripts.report results/h100``. Measures nothing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mirage.ir.serialize import atomic_write_text
from scripts.harness import plot, report
from scripts.harness.records import ResultsError, atomic_write_bytes, load_run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.report", description=__doc__)
    p.add_argument("directory", type=Path, help="a results/<gpu> directory")
    args = p.parse_args(argv)
    try:
        meta, records = load_run(args.directory)
    except ResultsError as e:
        print(f"report: {e}", file=sys.stderr)
        return 1
    text = report.table(meta, records)
    atomic_write_text(args.directory / "table.txt", text)
    name = meta.get("gpu_info", {}).get("name", meta.get("gpu"))
    atomic_write_bytes(args.directory / "fig7.png",
                       plot.render(records, f"Mirage vs best baseline on {name} "
                                            f"(run {meta.get('run_id')})"))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
