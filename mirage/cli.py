"""Command line: ``python -m mirage check FILE...`` validates (and verifies) µGraph files;
``python -m mirage search`` searches, verifies and saves candidates for one program.

Bad input (an argument, a file, a checkpoint) ends with one ``error: <message>`` line on stderr
and exit status 2, never a traceback; Ctrl-C ends with one ``interrupted: ...`` line and 130.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from mirage.errors import InputError, MirageError
from mirage.ir import TARGETS, MugraphFormatError, load
from mirage.ir.summary import summarize
from mirage.ir.target import default_target
from mirage.verify import verify

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def _verdict_text(verdict) -> str:
    if verdict:
        bound = "" if "false-pass bound" in verdict.reason else (
            f" (false-pass bound {verdict.bound:.1e})")
        return f"verified: {verdict.reason}{bound}"
    if getattr(verdict, "status", "") == "cannot certify" or verdict.reason.startswith("cannot"):
        return f"not verified: {verdict.reason}"  # a verdict that cannot certify, as is
    return f"NOT EQUIVALENT: {verdict.reason}"


def _check_one(path: str, target, run_verifier: bool, no_program_ok: bool) -> bool:
    """Print the lines of one file; True if it is valid (and verified, when asked)."""
    try:
        doc = load(path, target)
    except MugraphFormatError as e:
        print(f"error: {e}")
        return False
    print(f"valid: {path}: {len(doc.graphs)} graph{'s' * (len(doc.graphs) != 1)}"
          f"{' + input program' if doc.program else ''}")
    good = True
    for i, g in enumerate(doc.graphs):
        line = f"  graph {i}: {summarize(g)}"
        if run_verifier and doc.program is not None:
            verdict = verify(doc.program, g, target=target)
            line += f" | {_verdict_text(verdict)}"
            good &= bool(verdict)
        print(line)
    if run_verifier and doc.program is None and not no_program_ok:
        print(f"not verified: no program: {path} stores no input program to verify against "
              f"(--no-program-ok accepts that)")
        good = False
    return good


def check_files(paths: list[str], target_name: str, run_verifier: bool,
                no_program_ok: bool = False) -> int:
    """Check every file, even after a bad one; 0 if every file is good, else 1."""
    target = TARGETS[target_name]
    valid = sum(_check_one(p, target, run_verifier, no_program_ok) for p in paths)
    print(f"{len(paths)} file{'s' * (len(paths) != 1)}: {valid} valid, "
          f"{len(paths) - valid} invalid")
    return 0 if valid == len(paths) else 1


class _Parser(argparse.ArgumentParser):
    """An argument error is an ``InputError`` (one ``error:`` line), not usage and exit."""

    def error(self, message: str):
        raise InputError(message)


def _whole(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    parse.__name__ = "whole number"
    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    targets = sorted(TARGETS)
    default = default_target().name
    parser = _Parser(prog="python -m mirage")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate µGraph files (and verify them against the "
                           "input program stored in the file)")
    check.add_argument("files", nargs="+")
    check.add_argument("--target", choices=targets, default=default,
                       help=f"GPU whose shared-memory limit applies (default: {default})")
    check.add_argument("--no-verify", action="store_true",
                       help="only check the format and validity rules")
    check.add_argument("--no-program-ok", action="store_true",
                       help="a file without an input program is valid (not verified)")
    find = sub.add_parser("search", help="search µGraphs equivalent to a program and save the "
                          "verified candidates (and the program itself, always last)")
    source = find.add_mutually_exclusive_group(required=True)
    source.add_argument("--case", help="one of the paper workloads (with --batch)")
    source.add_argument("--program", help="a µGraph file whose 'program' (or first graph) to "
                        "optimize")
    find.add_argument("--batch", type=_whole(1), default=1)
    find.add_argument("--out", required=True, help="where to write the candidates (JSON); an "
                      "existing file with more verified candidates is kept unless --force "
                      "(the new result then goes to <out stem>.new.json)")
    find.add_argument("--force", action="store_true",
                      help="replace --out even by a result with fewer verified candidates")
    find.add_argument("--checkpoint", help="resume from / write this checkpoint file")
    find.add_argument("--restart", action="store_true", help="start over even if the "
                      "checkpoint exists (it is kept as <checkpoint>.bak)")
    find.add_argument("--workers", type=_whole(1), default=os.cpu_count() or 1)
    find.add_argument("--time-budget", type=_seconds, default=600.0, help="seconds")
    find.add_argument("--max-block-ops", type=_whole(1), default=8)
    find.add_argument("--max-kernel-ops", type=_whole(1), default=5)
    find.add_argument("--keep", type=_whole(1), default=8)
    find.add_argument("--no-pruning", action="store_true")
    find.add_argument("--target", choices=targets, default=default)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        if args.command == "check":
            return check_files(args.files, args.target, not args.no_verify,
                               args.no_program_ok or args.no_verify)
        from mirage.cli_search import run_search

        return run_search(args, argv)
    except MirageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
