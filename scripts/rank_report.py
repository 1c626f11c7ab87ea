"""Where the hand-written reference's tiling ranks among the search's candidates.

    python -m scripts.rank_report [--cases rmsnorm,gatedmlp] [--batches 1,8,16] [--workers 2]
                                  [--keep 8] [--top 10] [--saved saved_mugraphs]

For each case and batch: the search of ``scripts.search_saved`` (same configuration, same
checkpoint ``.cache/search/<case>_b<b>.ckpt``: after ``search_saved`` ran, nothing is searched
again), then every unique complete candidate in verification order
(``engine.verification_order``). Prints where the first candidate with the reference's tiling
(the grid and loop range of each kernel, grid axes in any order,
``mirage.workloads.reference``) stands, whether it lies
within the first ``--keep`` (as if every candidate verified), whether the saved file holds it,
and the leading tilings with their estimates.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mirage.ir import TARGETS, load
from mirage.ir.serialize import MugraphFormatError, graph_from_dict
from mirage.search import SearchConfig, search
from mirage.search.cost import estimate_seconds
from mirage.search.engine import (
    _classes,
    _tasks,
    _tiling,
    cache_key,
    verification_order,
)
from mirage.search.kernel import Problem, initial_prefix
from mirage.workloads import program, reference
from scripts.search_saved import MAX_BLOCK_OPS


def _key(graph) -> tuple:
    """A graph's tiling up to the order of grid axes (the search puts batch labels first,
    then output tiles, then a split; a hand-written graph may order them otherwise)."""
    return tuple((tuple(sorted(grid)), loop) for grid, loop in _tiling(graph))


def _fmt(tiling) -> str:
    return " + ".join(f"{'x'.join(map(str, grid))}/{loop}" for grid, loop in tiling)


def ordered_candidates(case: str, b: int, workers: int, ckpt_dir: Path
                       ) -> tuple[list, float]:
    """Every unique complete candidate of ``scripts.search_saved``'s search of (case, b), in
    verification order, and the seconds it took (about none when its checkpoint is complete)."""
    target = TARGETS["h100"]
    config = SearchConfig(max_block_ops=MAX_BLOCK_OPS[case], num_workers=workers,
                          time_budget_s=600.0)
    prog = program(case, b)
    ckpt = ckpt_dir / f"{case}_b{b}.ckpt"
    start = time.monotonic()
    doc = json.loads(ckpt.read_text()) if ckpt.exists() else {}
    if doc.get("key") != cache_key(prog, config) or len(doc["done"]) < len(
            _tasks(_classes_of(prog, config))):
        search(prog, config, checkpoint=ckpt, progress=False)
        doc = json.loads(ckpt.read_text())
    unique = {}
    for entry in doc["done"].values():
        for d in entry["graphs"]:
            try:
                g = graph_from_dict(d, target, str(ckpt))
            except MugraphFormatError:  # a checkpoint of older rules: skip what they allowed
                continue
            unique.setdefault(g.digest, g)
    return verification_order(list(unique.values()), target), time.monotonic() - start


def report(case: str, b: int, workers: int, keep: int, top: int, ckpt_dir: Path,
           saved: Path) -> dict:
    target = TARGETS["h100"]
    ordered, seconds = ordered_candidates(case, b, workers, ckpt_dir)
    ref = reference(case, b)
    want = _key(ref)
    tilings = [_key(g) for g in ordered]
    rank = tilings.index(want) + 1 if want in tilings else None
    ref_us = estimate_seconds(ref, target) * 1e6
    path = saved / f"{case}_b{b}.json"
    in_saved = path.exists() and want in [_key(g) for g in load(path, target).graphs]
    print(f"== {case} b={b}: {len(ordered)} tilings, {seconds:.0f} s;"
          f" reference {_fmt(_tiling(ref))} est {ref_us:.2f} us: rank {rank}"
          f" {'within keep' if rank and rank <= keep else 'out'},"
          f" {'in' if in_saved else 'not in'} {path}")
    for k, g in enumerate(ordered[:top]):
        mark = "*" if tilings[k] == want else " "
        print(f"  {mark}{k + 1:3d} {estimate_seconds(g, target) * 1e6:7.2f} us  "
              f"{_fmt(_tiling(g))}")
    if rank and rank > top:
        print(f"  *{rank:3d} {estimate_seconds(ordered[rank - 1], target) * 1e6:7.2f} us  "
              f"{_fmt(_tiling(ordered[rank - 1]))}")
    return {"case": case, "b": b, "tilings": len(ordered),
            "rank": rank, "saved": in_saved}


def _classes_of(prog, config: SearchConfig) -> list:
    problem = Problem.of(prog, TARGETS[config.target])
    return _classes(problem, initial_prefix(problem), config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="rmsnorm,gatedmlp,lora,gqa,qknorm")
    parser.add_argument("--batches", default="1,8,16")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", type=int, default=8)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--ckpt-dir", default=".cache/search")
    parser.add_argument("--saved", default="saved_mugraphs")
    args = parser.parse_args(argv)
    ckpt_dir = Path(args.ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    rows = [report(case, int(b), args.workers, args.keep, args.top, ckpt_dir, Path(args.saved))
            for case in args.cases.split(",") for b in args.batches.split(",")]
    print("\ncase       b  rank  tilings  saved")
    for r in rows:
        print(f"{r['case']:9} {r['b']:>2} {str(r['rank']):>5} {r['tilings']:>8} "
              f"{r['saved']!s:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
