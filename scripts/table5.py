"""Table 5 of the paper: RMSNorm (b = 1) search time by the maximum number of block-graph ops.

    python -m scripts.table5 [--ops 5-11] [--workers 1,8] [--cap 300] [--no-pruning-ops 5,6]
                             [--out results/table5]

For each limit it runs the search with each worker count, and with abstract-expression pruning
off (capped: a run that hits the cap is reported as "> cap").

The limit counts ops the way the upstream generator does, which is what the paper's column
means: a block graph's input ops count, its outputs do not (``operators.size()`` of the block
graph, input ops included, against ``max_num_threadblock_graph_op``). RMSNorm's block graphs have
two inputs (the X and W tiles), so a limit of k is ``SearchConfig.max_block_ops = k - 2``, our
count of ops and accumulators alone; the table shows both. The time is the search itself
(enumeration, pruning, checkpoints); verifying the candidates is reported by ``mirage search``
and is not part of this table. Writes ``table5.csv``, ``table5.txt`` and ``table5.png``.
"""

from __future__ import annotations

import csv
import io
import os
import platform
import sys
from pathlib import Path

from mirage.ir.serialize import atomic_write_text
from mirage.search import SearchConfig, search
from mirage.workloads import program
from scripts.harness import cli

PAPER = {  # max ops: (8 threads, 1 thread, no pruning) in seconds; None: "> 10 h"
    5: (11, 58, 768), 6: (16, 93, 19934), 7: (22, 150, None), 8: (24, 152, None),
    9: (26, 166, None), 10: (26, 166, None), 11: (28, 183, None),
}


def _ops(text: str, what: str = "--ops") -> list[int]:
    """"5-11" or "5,6": positive limits (an empty text: none); ``cli.UsageError`` otherwise."""
    if not text.strip():
        return []
    if "-" in text:
        lo, _, hi = text.partition("-")
        lo, hi = cli.positive_int(lo, what), cli.positive_int(hi, what)
        if lo > hi or hi > 64:
            raise cli.UsageError(f"{what} {text!r}: want low-high with low <= high <= 64")
        return list(range(lo, hi + 1))
    return list(cli.batches(text, what))


BLOCK_INPUTS = 2  # RMSNorm's block graphs read two tiles: X and W


def measure(max_ops: int, workers: int, pruning: bool, cap: float) -> dict:
    """One search with the paper's limit ``max_ops`` (block inputs counted)."""
    config = SearchConfig(max_block_ops=max_ops - BLOCK_INPUTS, num_workers=workers,
                          time_budget_s=cap,
                          use_pruning=pruning, verify_candidates=False, keep=1)
    result = search(program("rmsnorm", 1), config, progress=False)
    r = result.report
    capped = r.stop_reason != "exhausted"
    return {"max_ops": max_ops, "max_block_ops": max_ops - BLOCK_INPUTS, "workers": workers,
            "pruning": pruning,
            "seconds": round(r.search_s, 2), "capped": capped, "cap_s": cap,
            "explored": r.explored, "candidates": r.candidates}


def _cell(row: dict | None) -> str:
    if row is None:
        return "-"
    return f"> {row['cap_s']:.0f} s" if row["capped"] else f"{row['seconds']:.1f} s"


def render(rows: list[dict], workers: list[int]) -> str:
    ops = sorted({r["max_ops"] for r in rows})
    find = {(r["max_ops"], r["workers"], r["pruning"]): r for r in rows}
    header = ["max ops (ours)", *[f"ours, {w} worker{'s' * (w > 1)}" for w in workers],
              "ours, no pruning", "paper 8 threads", "paper 1 thread", "paper no pruning"]
    lines = [header]
    for k in ops:
        unpruned = [r for r in rows if r["max_ops"] == k and not r["pruning"]]
        paper = PAPER.get(k, (None, None, None))
        cells = [_cell(find.get((k, w, True))) for w in workers]
        lines.append([f"{k} ({k - BLOCK_INPUTS})", *cells,
                      _cell(unpruned[0] if unpruned else None),
                      *[("> 10 h" if p is None and i == 2 else f"{p} s" if p else "-")
                        for i, p in enumerate(paper)]])
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    out = io.StringIO()
    for n, row in enumerate(lines):
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
        if n == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")
    return out.getvalue()


def plot(rows: list[dict], workers: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for w in workers:
        pts = sorted((r["max_ops"], r["seconds"]) for r in rows
                     if r["workers"] == w and r["pruning"])
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"ours, {w} workers")
    pts = sorted((r["max_ops"], r["seconds"]) for r in rows if not r["pruning"])
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="x", ls="--",
                label="ours, no pruning (capped)")
    for i, label in enumerate(("paper, 8 threads", "paper, 1 thread")):
        ks = sorted(PAPER)
        ax.plot(ks, [PAPER[k][i] for k in ks], ls=":", label=label)
    ax.set_yscale("log")
    ax.set_xlabel("max ops in a block graph (inputs counted, as upstream)")
    ax.set_ylabel("search time (s)")
    ax.set_title("Table 5: RMSNorm search time")
    ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except cli.UsageError as e:
        return cli.fail("table5", e)
    except KeyboardInterrupt:
        return cli.fail("table5", "interrupted; nothing written (the table is written at the "
                                  "end)", cli.INTERRUPTED)


def _main(argv: list[str] | None) -> int:
    parser = cli.Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", default="5-11")
    parser.add_argument("--workers", default="1,8")
    parser.add_argument("--cap", type=float, default=300.0, help="seconds per run")
    parser.add_argument("--no-pruning-ops", default="5,6")
    parser.add_argument("--out", default="results/table5")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if not (0 < args.cap < 1e7):  # also refuses nan and inf
        raise cli.UsageError(f"--cap {args.cap} is not a positive number of seconds")
    workers = list(cli.batches(args.workers, "--workers"))
    ops, unpruned = _ops(args.ops), _ops(args.no_pruning_ops, "--no-pruning-ops")
    if not ops and not unpruned:
        raise cli.UsageError("--ops and --no-pruning-ops name no limit to measure")
    rows = []
    for k in ops:
        for w in workers:
            rows.append(measure(k, w, True, args.cap))
            print(f"[table5] max ops {k}, {w} workers: {_cell(rows[-1])}", flush=True)
    for k in unpruned:
        rows.append(measure(k, max(workers), False, args.cap))
        print(f"[table5] max ops {k}, no pruning: {_cell(rows[-1])}", flush=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "table5.csv", buf.getvalue())
    text = render(rows, workers)
    host = f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs\n"
    atomic_write_text(out / "table5.txt", host + text)
    plot(rows, workers, out / "table5.png")
    print(host + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
