"""Regenerate ``saved_mugraphs/`` by search, one file per workload and batch size.

    python -m scripts.search_saved [--target h100|a100] [--cases ...] [--batches 1,8,16]
                                   [--workers 8] [--max-block-ops N] [--time-budget 600]

Each file is written by ``python -m mirage search --case C --batch B ...``; the exact command is
recorded in the file's ``meta.command``. Without ``--max-block-ops`` each case gets the limit of
``MAX_BLOCK_OPS``: two more ops than its hand-written reference's largest block graph, so the
search space holds the reference and its variants, not only the reference.

``--target`` names the GPU whose limits (shared memory per block, SMs) and cost model the search
uses; it is passed on to ``mirage search --target``. The H100 set is the flat ``saved_mugraphs/``
(the default ``--out``); every other target's set is ``saved_mugraphs/<target>/`` (e.g.
``saved_mugraphs/a100/``), which is where ``scripts.fig7`` looks for that GPU's files
(``scripts.harness.mirage_side.saved_dir_for``). Checkpoints carry the target in their name, so
an A100 search never resumes an H100 one, and each file records the target it was searched for.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mirage.cli import main as mirage_main
from mirage.ir.target import TARGETS
from mirage.workloads import BATCHES, WORKLOADS

# Per case: the reference's largest block graph (ops and accumulators) + 2, where that search
# ends in minutes; LoRA (4 inputs) gets +1, QKNorm (8 ops already) and nTrans +0: nTrans's
# nested norms expand into a target with many pieces, and its 6-op fused body is found in a few
# minutes on 2 cores (a 7-op search takes several times longer).
MAX_BLOCK_OPS = {"rmsnorm": 6, "gatedmlp": 8, "lora": 6, "gqa": 7, "qknorm": 8, "ntrans": 6}

# The target whose set is the flat saved_mugraphs/ (kept where every test and expected/ points).
FLAT_TARGET = "h100"


def default_out(target: str, root: str = "saved_mugraphs") -> str:
    """Where ``--target``'s set goes when ``--out`` is not given: the flat ``root`` for the
    H100, ``root/<target>`` for any other target."""
    return root if target == FLAT_TARGET else f"{root}/{target}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(WORKLOADS))
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--max-block-ops", type=int, default=None,
                        help="one limit for every case (default: MAX_BLOCK_OPS per case)")
    parser.add_argument("--time-budget", type=float, default=600.0)
    parser.add_argument("--keep", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=1, help="searches run side by side")
    parser.add_argument("--target", choices=sorted(TARGETS), default=FLAT_TARGET,
                        help="the GPU whose limits and cost model the search uses (default h100)")
    parser.add_argument("--out", default=None,
                        help="folder of the files (default: saved_mugraphs for h100, "
                             "saved_mugraphs/<target> otherwise)")
    parser.add_argument("--checkpoint-dir", default=".cache/search")
    args = parser.parse_args(argv)
    out = args.out or default_out(args.target)
    ckpt_suffix = "" if args.target == FLAT_TARGET else f".{args.target}"
    commands = []
    for case in args.cases.split(","):
        for b in args.batches.split(","):
            commands.append(["search", "--case", case, "--batch", b, "--workers",
                             str(args.workers), "--max-block-ops",
                             str(args.max_block_ops or MAX_BLOCK_OPS[case]),
                             "--time-budget", str(args.time_budget), "--keep", str(args.keep),
                             "--target", args.target,
                             "--out", f"{out}/{case}_b{b}.json",
                             "--checkpoint",
                             f"{args.checkpoint_dir}/{case}_b{b}{ckpt_suffix}.ckpt"])
    Path(out).mkdir(parents=True, exist_ok=True)
    Path(args.checkpoint_dir).mkdir(parents=True, exist_ok=True)
    if args.jobs <= 1:
        status = 0
        for cmd in commands:
            print(f"[search-saved] python -m mirage {' '.join(cmd)}", flush=True)
            start = time.monotonic()
            code = mirage_main(cmd)
            status |= code
            print(f"[search-saved] {' '.join(cmd[1:5])}: exit {code}, wall "
                  f"{time.monotonic() - start:.1f} s", flush=True)
        return status
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(_run, commands))
    return max(results, default=0)


def _run(cmd: list[str]) -> int:
    log = Path(".cache/search") / (Path(cmd[cmd.index("--out") + 1]).stem + ".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        done = subprocess.run([sys.executable, "-m", "mirage", *cmd], stdout=f,
                              stderr=subprocess.STDOUT, check=False)
    tail = log.read_text().splitlines()[-1:] or ["(no output)"]
    print(f"[search-saved] {' '.join(cmd[1:5])}: exit {done.returncode}: {tail[0]}", flush=True)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
