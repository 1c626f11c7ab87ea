"""Command line: ``python -m mirage check FILE...`` validates (and verifies) µGraph files."""

from __future__ import annotations

import argparse
import sys

from mirage.ir import TARGETS, MugraphFormatError, load
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
    args = parser.parse_args(argv)
    if args.command == "check":
        return check_files(args.files, args.target, not args.no_verify)
    return 2


if __name__ == "__main__":
    sys.exit(main())
