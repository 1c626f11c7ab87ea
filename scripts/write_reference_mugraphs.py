"""Write the hand-written reference µGraphs to ``saved_mugraphs/`` after verifying each one.

    python -m scripts.write_reference_mugraphs [--cases gqa,rmsnorm] [--batches 1,8,16]

Each file ``saved_mugraphs/<case>_b<b>.json`` holds the input program and the candidates, with
the command that produced it. The search (``python -m mirage search``) writes the same format.
"""

from __future__ import annotations

import argparse
import datetime
import sys

from mirage.ir import save
from mirage.verify import verify
from mirage.workloads import BATCHES, WORKLOADS, program, reference


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(WORKLOADS))
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--out", default="saved_mugraphs")
    args = parser.parse_args(argv)
    command = "python -m scripts.write_reference_mugraphs " + " ".join(argv or sys.argv[1:])
    for case in args.cases.split(","):
        for b in map(int, args.batches.split(",")):
            prog, ref = program(case, b), reference(case, b)
            verdict = verify(prog, ref)
            print(f"{case} b={b}: {verdict.reason} (false-pass bound {verdict.bound:.1e})",
                  flush=True)
            if not verdict:
                return 1
            meta = {
                "case": case,
                "batch": b,
                "origin": "hand-written reference µGraph (mirage.workloads.references)",
                "command": command.strip(),
                "created": datetime.date.today().isoformat(),
                "verified": verdict.reason,
            }
            save(f"{args.out}/{case}_b{b}.json", [ref], program=prog, meta=meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
