"""Command-line plumbing shared by the make targets' scripts: one error line, never a traceback.

Every bad input (an unknown card, case or part name, a batch size that is not a positive
integer, a path that would leave its directory, a missing expected/ file) ends the script with
one line on stderr, ``error: <what> (<what is allowed>)``, and exit status ``USAGE`` (2). The
scripts raise ``UsageError``; ``Parser`` turns argparse's own complaints into the same error.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

USAGE = 2  # bad input: the command line, or a file it names
BUSY = 5  # another run holds the results directory's lock
INTERRUPTED = 130  # Ctrl-C
# The cards results may be filed under by name (GPU=, --gpu). A detected card of another kind
# is filed under its NVML slug; naming it needs no GPU= at all.
KNOWN_GPUS = ("a100", "h100", "h200")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


class UsageError(Exception):
    """Bad input; the message names the value and what would have been accepted."""


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors raise ``UsageError`` instead of printing the
    usage and exiting, so the script prints one ``error:`` line."""

    def error(self, message):  # argparse calls this for every bad option
        raise UsageError(message)


def fail(prog: str, message: str, code: int = USAGE) -> int:
    """Print ``error: <prog>: <message>`` as one line and return ``code`` (for ``return``)."""
    one_line = " ".join(str(message).split())
    print(f"error: {prog}: {one_line}", file=sys.stderr, flush=True)
    return code


def gpu_name(value: str | None) -> str | None:
    """A card name a user gave (GPU=, --gpu), lower-cased; None stays None."""
    if value is None:
        return None
    name = str(value).strip().lower()
    if name not in KNOWN_GPUS:
        raise UsageError(f"unknown GPU {value!r} (known: {', '.join(KNOWN_GPUS)}; leave GPU= "
                         "out to use the detected card)")
    return name


def path_name(value: str, what: str) -> str:
    """``value`` if it is safe as one path component (no separator, no '..', no leading dot)."""
    if not isinstance(value, str) or not _NAME.fullmatch(value) or ".." in value:
        raise UsageError(f"{what} {value!r} cannot name a file (use letters, digits, '.', '-', "
                         "'_'; no '/', no '..')")
    return value


def positive_int(value, what: str) -> int:
    """``value`` as an int >= 1 (no bools, no floats, no '1.5', no '0')."""
    if isinstance(value, bool):
        raise UsageError(f"{what} {value!r} is not a positive integer")
    text = str(value).strip()
    if not re.fullmatch(r"\+?[0-9]{1,9}", text) or int(text) < 1:
        raise UsageError(f"{what} {value!r} is not a positive integer")
    return int(text)


def batches(text: str, what: str = "--batches") -> tuple[int, ...]:
    """A comma list of batch sizes, each a positive integer, at least one, no repeats."""
    parts = [p.strip() for p in str(text).split(",")]
    if not any(parts):
        raise UsageError(f"{what} {text!r} names no batch size")
    out = tuple(positive_int(p, f"{what} entry") for p in parts if p)
    if len(set(out)) != len(out):
        raise UsageError(f"{what} {text!r} names a batch size twice")
    return out


def names(text: str | None, known, what: str) -> list[str] | None:
    """A comma list of names, each one of ``known``; None or empty: None (all)."""
    if text is None or not str(text).strip():
        return None
    picked = [n.strip() for n in str(text).split(",") if n.strip()]
    unknown = [n for n in picked if n not in known]
    if unknown:
        raise UsageError(f"unknown {what} {', '.join(map(repr, unknown))} "
                         f"(known: {', '.join(known)})")
    return picked


def inside(path: Path, root: Path, what: str) -> Path:
    """``path`` if it resolves under ``root`` (what a user value may not escape)."""
    resolved, base = Path(path).resolve(), Path(root).resolve()
    if resolved != base and base not in resolved.parents:
        raise UsageError(f"{what} {str(path)!r} is outside {base}")
    return Path(path)


def positive_type(what: str):
    """An argparse ``type=`` for a positive integer option."""
    def convert(value: str) -> int:  # argparse puts "argument <what>: " in front
        try:
            return positive_int(value, what)
        except UsageError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a positive integer") from None
    convert.__name__ = "positive integer"
    return convert
