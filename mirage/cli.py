"""Command line: ``python -m mirage check FILE...`` validates (and verifies) µGraph files."""

from __future__ import annotations

import argparse
import os
import sys

from mirage.ir import TARGETS, MugraphFormatError, load, save
from mirage.ir.summary import summarize
from mirage.verify import verify


def check_files(paths: list[str], target_name: str, run_verifier: bool) -> int:
    """Print ``valid: ...`` or the error for each file; 0 if every file is good, else 1."""
    status = 0
    for path in paths:
        try:
            doc = load(path, TARGETS[target_name])
        except MugraphFormatError as e:
            print(f"error: {e}")
            status = 1
            continue
        print(f"valid: {path}: {len(doc.graphs)} graph{'s' * (len(doc.graphs) != 1)}"
              f"{' + input program' if doc.program else ''}")
        for i, g in enumerate(doc.graphs):
            line = f"  graph {i}: {summarize(g)}"
            if run_verifier and doc.program is not None:
                verdict = verify(doc.program, g, target=TARGETS[target_name])
                line += f" | {'verified' if verdict else 'NOT EQUIVALENT'}: {verdict.reason}"
                status |= 0 if verdict else 1
            print(line)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mirage")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate µGraph files (and verify them against the "
                           "input program stored in the file)")
    check.add_argument("files", nargs="+")
    check.add_argument("--target", choices=sorted(TARGETS), default="h100",
                       help="GPU whose shared-memory limit applies (default: h100)")
    check.add_argument("--no-verify", action="store_true",
                       help="only check the format and validity rules")
    find = sub.add_parser("search", help="search µGraphs equivalent to a program and save the "
                          "verified candidates")
    source = find.add_mutually_exclusive_group(required=True)
    source.add_argument("--case", help="one of the paper workloads (with --batch)")
    source.add_argument("--program", help="a µGraph file whose 'program' (or first graph) to "
                        "optimize")
    find.add_argument("--batch", type=int, default=1)
    find.add_argument("--out", required=True, help="where to write the candidates (JSON)")
    find.add_argument("--checkpoint", help="resume from / write this checkpoint file")
    find.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    find.add_argument("--time-budget", type=float, default=600.0, help="seconds")
    find.add_argument("--max-block-ops", type=int, default=8)
    find.add_argument("--max-kernel-ops", type=int, default=5)
    find.add_argument("--keep", type=int, default=8)
    find.add_argument("--no-pruning", action="store_true")
    find.add_argument("--target", choices=sorted(TARGETS), default="h100")
    args = parser.parse_args(argv)
    if args.command == "check":
        return check_files(args.files, args.target, not args.no_verify)
    if args.command == "search":
        return run_search(args, argv)
    return 2


def run_search(args, argv) -> int:
    from mirage.search import SearchConfig, search

    if args.case:
        from mirage.workloads import program as workload_program

        prog = workload_program(args.case, args.batch)
    else:
        doc = load(args.program, TARGETS[args.target])
        prog = doc.program or doc.graphs[0]
    config = SearchConfig(max_kernel_ops=args.max_kernel_ops,
                          max_block_ops=args.max_block_ops, num_workers=args.workers,
                          time_budget_s=args.time_budget, use_pruning=not args.no_pruning,
                          target=args.target, keep=args.keep)
    result = search(prog, config, checkpoint=args.checkpoint)
    for line in result.report.lines():
        print(line)
    command = "python -m mirage " + " ".join(argv if argv is not None else sys.argv[1:])
    meta = {"case": args.case, "batch": args.batch if args.case else None,
            "origin": "search", "command": command, "config": config.key_fields(),
            "report": result.report.lines(),
            "estimated_us": [round(s * 1e6, 2) for s in result.estimates_s]}
    save(args.out, result.candidates, program=prog, meta=meta)
    return 0 if result.candidates else 1


if __name__ == "__main__":
    sys.exit(main())
