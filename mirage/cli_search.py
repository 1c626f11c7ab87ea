"""``python -m mirage search``: everything checked before the search starts, nothing lost after.

Before any work: the program (``--case`` or ``--program``), the ``--out`` and ``--checkpoint``
paths (their directory exists and is writable, the path is not a directory), an existing
``--out`` (it must be a µGraph file) and an existing checkpoint (``search`` refuses a damaged or
foreign one, or one of other settings, unless ``--restart``). After the search the candidates
are written atomically; an existing ``--out`` with more verified searched candidates than the
new result is kept unless ``--force``, and the new result goes beside it to
``<out stem>.new.json``, so neither is lost (exit status 1).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mirage.errors import InputError, OutputError
from mirage.ir import TARGETS, KernelGraph, MugraphFormatError, load, save

EXIT_KEPT_OLD = 1
EXIT_INTERRUPTED = 130


def writable_path(path: Path, flag: str) -> None:
    """Refuse (``OutputError`` naming ``flag`` and the path) a file that cannot be written."""
    if path.is_dir():
        raise OutputError(f"{flag} {path}: is a directory")
    parent = path.parent
    if not parent.is_dir():
        raise OutputError(f"{flag} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{flag} {path}: directory {parent} is not writable")


def searched_count(doc) -> int:
    """Verified searched candidates of a saved result: its graphs other than the program."""
    program = None if doc.program is None else doc.program.digest
    return sum(g.digest != program for g in doc.graphs)


def _program(args, target) -> tuple[KernelGraph, str]:
    if args.case is not None:
        from mirage.workloads import WORKLOADS
        from mirage.workloads import program as workload_program

        if args.case not in WORKLOADS:
            raise InputError(f"--case: unknown case {args.case!r} (known: "
                             f"{', '.join(WORKLOADS)})")
        return workload_program(args.case, args.batch), args.case
    doc = load(args.program, target)
    if doc.program is None and not doc.graphs:
        raise InputError(f"--program {args.program}: the file holds no program and no graph")
    return doc.program or doc.graphs[0], args.program


def _old_out(out: Path, target) -> int | None:
    """The verified count of an existing ``--out``, None if there is none; refuses a file that
    is not a µGraph file (it is not ours to replace)."""
    if not out.exists():
        return None
    try:
        return searched_count(load(out, target))
    except MugraphFormatError as e:
        raise OutputError(f"--out {out}: exists and is not a readable µGraph file "
                          f"({e.message}); move it or choose another --out") from None


def run_search(args, argv) -> int:
    from mirage.search import SearchConfig, search

    target = TARGETS[args.target]
    prog, _ = _program(args, target)
    out = Path(args.out)
    writable_path(out, "--out")
    checkpoint = Path(args.checkpoint) if args.checkpoint else None
    if checkpoint is not None:
        writable_path(checkpoint, "--checkpoint")
    old = None if args.force else _old_out(out, target)
    config = SearchConfig(max_kernel_ops=args.max_kernel_ops,
                          max_block_ops=args.max_block_ops, num_workers=args.workers,
                          time_budget_s=args.time_budget, use_pruning=not args.no_pruning,
                          target=args.target, keep=args.keep)
    try:
        result = search(prog, config, checkpoint=checkpoint, restart=args.restart)
    except KeyboardInterrupt:
        if checkpoint is not None and checkpoint.exists():
            print(f"interrupted: checkpoint kept at {checkpoint}, resume with the same command",
                  file=sys.stderr)
        else:
            print("interrupted: no checkpoint (use --checkpoint to make a search resumable)",
                  file=sys.stderr)
        return EXIT_INTERRUPTED
    for line in result.report.lines():
        print(line)
    command = "python -m mirage " + " ".join(argv if argv is not None else sys.argv[1:])
    meta = {"case": args.case, "batch": args.batch if args.case else None,
            "origin": "search", "command": command, "config": config.key_fields(),
            "searched": len(result.searched), "report": result.report.lines(),
            "estimated_us": [round(s * 1e6, 2) for s in result.estimates_s]}
    new = len(result.searched)
    if old is not None and new < old:
        beside = out.with_name(f"{out.stem}.new.json")
        save(beside, result.candidates, program=prog, meta=meta, target=config.target)
        print(f"error: --out {out} kept: it holds {old} verified candidates, the new result "
              f"{new}; the new result is at {beside} (--force replaces)", file=sys.stderr)
        return EXIT_KEPT_OLD
    save(out, result.candidates, program=prog, meta=meta, target=config.target)
    return 0 if result.searched else 1
