"""Searched µGraphs against the hand-written references, on the GPU at hand.

    python -m scripts.search_vs_reference [--saved saved_mugraphs] [--cases ...]
                                          [--batches 1,8,16] [--out DIR]

For each case and batch: every candidate in ``saved_mugraphs/<case>_b<b>.json`` (written by the
search) and the hand-written reference (``mirage.workloads.reference``) are compiled, checked
against the fp32 reference on fresh inputs (the harness's tolerance), and timed with the
harness's one method (``mirage.profile.timing.time_gpu``: CUDA-graph replay, events, median,
inputs rotated past L2). Prints: case, b, reference µs, best searched µs, searched/reference.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from mirage.ir import H100, load
from mirage.profile.timing import time_gpu
from mirage.runtime import compile as compile_graph
from mirage.workloads import reference
from scripts.harness.cases import CASES, relative_error, single_output
from scripts.harness.cases import reference as fp32_reference

L2_BYTES = 50 * 2**20


def _time(graph, case, shapes, seed) -> tuple[float, float]:
    sets = max(2, int(2 * L2_BYTES // case.input_bytes(shapes)) + 1)
    inputs = [tuple(t.cuda() for t in case.inputs(shapes, seed + k)) for k in range(min(sets, 8))]
    fn = compile_graph(graph)
    check = [t.cuda() for t in case.inputs(shapes, seed + 1000)]
    err = relative_error(single_output(fn(*check)), fp32_reference(case, check))
    if not err <= case.tolerance:
        return float("nan"), err
    return time_gpu(fn, inputs).median_us, err


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saved", default="saved_mugraphs")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--batches", default="1,8,16")
    parser.add_argument("--out", default="results/search_vs_reference")
    args = parser.parse_args(argv)
    rows = []
    for name in args.cases.split(","):
        case = CASES[name]
        for b in map(int, args.batches.split(",")):
            shapes = case.shapes(b)
            path = Path(args.saved) / f"{name}_b{b}.json"
            searched = []
            for g in load(path, H100).graphs:
                try:
                    searched.append(_time(g, case, shapes, 7))
                except Exception as e:  # a candidate that cannot run loses, it does not stop
                    print(f"  {name} b={b}: candidate failed: {type(e).__name__}: {e}")
            ref_us, ref_err = _time(reference(name, b), case, shapes, 7)
            ok = [t for t, _ in searched if t == t]
            best = min(ok) if ok else float("nan")
            rows.append({"case": name, "b": b, "reference_us": round(ref_us, 2),
                         "searched_best_us": round(best, 2), "candidates": len(searched),
                         "correct": len(ok), "ratio": round(best / ref_us, 3),
                         "candidates_us": [round(t, 2) for t, _ in searched]})
            print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from mirage.ir.serialize import atomic_write_text

    atomic_write_text(out / "search_vs_reference.jsonl",
                      "".join(json.dumps(r) + "\n" for r in rows))
    print(f"\n{'case':10} {'b':>3} {'reference':>10} {'searched':>10} {'ratio':>6}  (µs, "
          f"{torch.cuda.get_device_name()})")
    for r in rows:
        print(f"{r['case']:10} {r['b']:>3} {r['reference_us']:>10} {r['searched_best_us']:>10} "
              f"{r['ratio']:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
