"""Kernel benchmark: the six reference µGraphs through the Triton backend, on the GPU at hand.

For each case and batch size: compile the reference µGraph (``mirage.runtime.compile``, tuned),
check its output against the fp32 reference on fresh random inputs (relative L2 <= 1e-2, every
output element written), then time it, PyTorch eager and nothing-but-memory side by side with
one method (``mirage.profile.timing``: CUDA-graph replay of 128 calls, CUDA events, median of
>= 100 samples, inputs rotated so weights are not served from L2). The memory floor is the bytes
the program must move (inputs read once, output written once) over the device-to-device copy
bandwidth measured in the same run.

``--variants`` also tries other tile parameters of the reference builders (finer grids for the
memory-bound GEMV-like cases, other split-KV factors for attention) and reports the best; the
table marks which parameters each row used. ``--interpret`` runs the same checks at reduced
shapes in Triton's CPU interpreter (no timing): a dry run of this script without a GPU.

    python3 scripts/bench_kernels.py                      # all cases, b = 1, 8, 16
    python3 scripts/bench_kernels.py --cases rmsnorm --batches 1 --variants
    python3 scripts/bench_kernels.py --interpret

Writes ``kernels.csv`` (one row per implementation), ``kernels.jsonl`` (the same with raw
samples, tuned configs and per-kernel times) and ``kernels.log`` under ``$OUT`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from mirage.ir import Ref  # noqa: E402
from mirage.profile.timing import METHOD, copy_bandwidth, time_gpu  # noqa: E402
from mirage.runtime import compile as compile_graph  # noqa: E402
from mirage.workloads import REFERENCES, SHAPES  # noqa: E402

CASES = ("rmsnorm", "gatedmlp", "lora", "gqa", "qknorm", "ntrans")
TOLERANCE = 1e-2  # relative L2 error for fp16
L2_BYTES = 50 << 20

# Tile parameters tried with --variants besides each builder's defaults.
VARIANTS = {
    "rmsnorm": [dict(tile_n=64, tile_k=256, rms_first=True),
                dict(tile_n=32, tile_k=256, rms_first=True),
                dict(tile_n=64, tile_k=128, rms_first=True),
                dict(tile_n=32, tile_k=256), dict(tile_n=64, tile_k=256),
                dict(tile_n=64, tile_k=128), dict(tile_n=128, tile_k=128),
                dict(tile_n=128, tile_k=64), dict(tile_n=32, tile_k=512)],
    "gatedmlp": [dict(tile_n=32, tile_k=256), dict(tile_n=16, tile_k=256),
                 dict(tile_n=64, tile_k=128)],
    "lora": [dict(tile_n=64, tile_k=64), dict(tile_n=16, tile_k=256)],
    "gqa": [dict(kv_splits=16), dict(kv_splits=8), dict(kv_splits=4),
            dict(kv_splits=8, row_splits=4)],
    "qknorm": [dict(kv_splits=16), dict(kv_splits=8), dict(kv_splits=4),
               dict(kv_splits=8, row_splits=4)],
    "ntrans": [],
}

# Reduced shapes for --interpret (the builders clip their tiles to these).
SMALL = {
    "rmsnorm": ({"X": (2, 64), "W": (64, 48)}, dict(tile_n=16, tile_k=16)),
    "gatedmlp": ({"X": (3, 64), "W1": (64, 32), "W2": (64, 32)}, dict(tile_n=16, tile_k=16)),
    "lora": ({"X": (2, 32), "W": (32, 64), "A": (32, 4), "B": (4, 64)},
             dict(tile_n=16, tile_k=16)),
    "gqa": ({"Q": (2, 8, 16), "K": (2, 64, 16), "V": (2, 64, 16)},
            dict(kv_splits=4, row_splits=2, tile_kv=8, combine_rows=2)),
    "qknorm": ({"Q": (2, 8, 16), "K": (2, 64, 16), "V": (2, 64, 16)},
               dict(kv_splits=4, row_splits=2, tile_kv=8, combine_rows=2)),
    "ntrans": ({"H": (2, 100), "X": (2, 100), "alpha": (2, 100)}, {}),
}


# --- the programs in torch (PyTorch eager; on fp32 copies with TF32 off: the reference) -------

def _rms_norm(x):
    return x / torch.sqrt(torch.mean(x * x, dim=-1, keepdim=True))


def _attention(q, k, v):
    e = torch.exp(torch.matmul(q, k.transpose(-1, -2)))
    return torch.matmul(e / e.sum(dim=-1, keepdim=True), v)


EAGER = {
    "rmsnorm": lambda x, w: torch.matmul(_rms_norm(x), w),
    "gatedmlp": lambda x, w1, w2: torch.nn.functional.silu(x @ w1) * (x @ w2),
    "lora": lambda x, w, a, b: x @ w + (x @ a) @ b,
    "gqa": _attention,
    "qknorm": lambda q, k, v: _attention(_rms_norm(q), _rms_norm(k), v),
    "ntrans": lambda h, x, alpha: _rms_norm(x + alpha * (_rms_norm(h) - x)),
}


def draw(case: str, shapes: dict, gen: torch.Generator, device) -> list[torch.Tensor]:
    """Random fp16 inputs in the ranges the programs are meant for.

    Weights are scaled by 1/sqrt(fan-in); activations get a random scale per row (so a kernel
    that skips a normalization is caught). The attention programs have no scaling and no max
    subtraction: Q and K are scaled so the scores q.k stay near N(0, 1) (GQA), and for QKNorm,
    whose rms_norm undoes any scale, Q lives mostly in the first half of the head dim and K in
    the second, which keeps exp(q.k) inside fp16's range.
    """

    def randn(shape, std=1.0):
        return std * torch.randn(shape, generator=gen, device=device)

    def rows(x):
        return x * (0.5 + 1.5 * torch.rand((*x.shape[:-1], 1), generator=gen, device=device))

    def half(x, first: bool):
        w = torch.full((x.shape[-1],), 1 / 16, device=device)  # leak 1/16 into the other half
        w[slice(None, x.shape[-1] // 2) if first else slice(x.shape[-1] // 2, None)] = 1.0
        return x * w

    s = list(shapes.values())
    if case == "rmsnorm":
        xs = [rows(randn(s[0])), randn(s[1], s[1][0] ** -0.5)]
    elif case == "gatedmlp":
        xs = [randn(s[0]), randn(s[1], s[1][0] ** -0.5), randn(s[2], s[2][0] ** -0.5)]
    elif case == "lora":
        xs = [randn(s[0]), randn(s[1], s[1][0] ** -0.5), randn(s[2], s[2][0] ** -0.5),
              randn(s[3], s[3][0] ** -0.5)]
    elif case == "gqa":
        std = s[0][-1] ** -0.25
        xs = [randn(s[0], std), randn(s[1], std), randn(s[2])]
    elif case == "qknorm":
        xs = [rows(half(randn(s[0]), True)), rows(half(randn(s[1]), False)), randn(s[2])]
    else:  # ntrans
        xs = [rows(randn(s[0])), rows(randn(s[1])),
              torch.rand(s[2], generator=gen, device=device)]
    return [x.half().contiguous() for x in xs]


def reference(case: str, inputs: list[torch.Tensor]) -> torch.Tensor:
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        return EAGER[case](*[x.float() for x in inputs])
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


def errors(out: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """(relative L2, max-norm relative) error; NaN or an unwritten element gives inf."""
    out = out.float()
    if not torch.isfinite(out).all():
        return math.inf, math.inf
    diff = out - ref
    return (float(diff.norm() / ref.norm()), float(diff.abs().max() / ref.abs().max()))


# --- one (case, b) --------------------------------------------------------------------------

class Log:
    def __init__(self, path: Path | None):
        self.file = open(path, "w") if path else None  # noqa: SIM115

    def __call__(self, *parts):
        line = " ".join(str(p) for p in parts)
        print(line, flush=True)
        if self.file:
            self.file.write(line + "\n")
            self.file.flush()


def check(fn, case: str, shapes: dict, seed: int, device, poison: bool) -> tuple[float, float]:
    """Run ``fn`` on fresh inputs (with ``poison``: into a NaN-filled ``out=``, so an unwritten
    element fails); its errors against the fp32 reference."""
    gen = torch.Generator(device=device).manual_seed(seed)
    inputs = draw(case, shapes, gen, device)
    ref = reference(case, inputs)
    if not poison:
        return errors(fn(*inputs), ref)
    out = torch.full(ref.shape, float("nan"), dtype=torch.float16, device=device)
    fn(*inputs, out=[out])
    return errors(out, ref)


def kernel_times(compiled, inputs, samples: int) -> dict[str, float]:
    """Median µs of each generated kernel alone (CUDA-graph timing, operands as in a call)."""
    values = compiled._execute(inputs, None)  # noqa: SLF001 - a profiling view of one call
    out = {}
    for i, launch in compiled.launches.items():
        node = compiled.graph.nodes[i]
        tensors = [values[r] for r in node.args] + [values[Ref(i, k)]
                                                    for k in range(len(node.outputs))]
        t = time_gpu(lambda *ts, launch=launch: launch(list(ts)), [tuple(tensors)],
                     samples=samples)
        out[launch.spec.name] = round(t.median_us, 2)
    return out


class Pair:
    """One (case, b): its input sets, floor and eager row, and the rows of our variants."""

    def __init__(self, case: str, b: int, args, bw: float, log: Log):
        self.case, self.b, self.args, self.log = case, b, args, log
        device = torch.device("cuda")
        self.shapes = SHAPES[case](b)
        nbytes_in = sum(math.prod(s) * 2 for s in self.shapes.values())
        gen = torch.Generator(device=device).manual_seed(1000 + b)
        probe = draw(case, self.shapes, gen, device)
        out_shape = tuple(EAGER[case](*probe).shape)
        nbytes = nbytes_in + math.prod(out_shape) * 2
        n_sets = max(2, min(128, math.ceil(2 * L2_BYTES / nbytes_in)))
        self.sets = [tuple(probe)] + [tuple(draw(case, self.shapes, gen, device))
                                      for _ in range(n_sets - 1)]
        self.base = {"case": case, "b": b, "method": METHOD, "bytes": nbytes,
                     "floor_us": round(nbytes / bw * 1e6, 2), "input_sets": n_sets,
                     "gpu": torch.cuda.get_device_name()}
        eager = EAGER[case]
        l2, mx = check(eager, case, self.shapes, 7, device, poison=False)
        t = time_gpu(eager, self.sets, samples=args.samples)
        self.rows = [{**self.base, "impl": "eager", "params": "", "rel_l2": l2, "max_rel": mx,
                      "correct": l2 <= TOLERANCE, "median_us": t.median_us, "p10_us": t.p10_us,
                      "p90_us": t.p90_us, "samples_us": t.samples_us}]
        log(f"  {case} b={b} eager {t.median_us:.2f} us (rel L2 {l2:.1e})")

    def run(self, params: dict, seed: int) -> None:
        """Compile, check and time the reference µGraph built with tile ``params``."""
        case, b, log = self.case, self.b, self.log
        label = ",".join(f"{a}={v}" for a, v in params.items()) or "default"
        row = {**self.base, "impl": "mirage", "params": label}
        self.rows.append(row)
        try:
            graph = REFERENCES[case](self.shapes, "fp16", **params)
            t0 = time.time()
            fn = compile_graph(graph)
            row["compile_s"] = round(time.time() - t0, 2)
            row["grids"] = {s.name: s.grid for s in fn.generated.kernels}
            row["configs"] = fn.tuned
            l2, mx = check(fn, case, self.shapes, seed, torch.device("cuda"), poison=True)
            row.update(rel_l2=l2, max_rel=mx, correct=l2 <= TOLERANCE)
            if l2 > TOLERANCE:
                log(f"  {case} b={b} [{label}] WRONG: rel L2 {l2:.2e}")
                return
            t = time_gpu(fn, self.sets, samples=self.args.samples)
            row.update(median_us=t.median_us, p10_us=t.p10_us, p90_us=t.p90_us,
                       samples_us=t.samples_us)
            row["kernel_us"] = kernel_times(fn, list(self.sets[0]), 30)
            configs = {n: (c["num_warps"], c["num_stages"]) for n, c in fn.tuned.items()}
            log(f"  {case} b={b} [{label}] {t.median_us:.2f} us (rel L2 {l2:.1e}, compile "
                f"{row['compile_s']} s, grids {row['grids']}, kernels {row['kernel_us']}, "
                f"configs {configs})")
        except Exception as e:  # noqa: BLE001 - a failing variant is reported, not fatal
            row.update(error=f"{type(e).__name__}: {e}"[:500], correct=False)
            log(f"  {case} b={b} [{label}] ERROR {row['error']}")


def summarize(rows: list[dict], log: Log) -> None:
    log("")
    log(f"{'case':<9}{'b':>3}{'ours us':>10}{'eager us':>10}{'floor us':>10}{'% floor':>9}"
        f"{'vs eager':>9}  params (default ref: {'ref us':>7})")
    keys = sorted({(r["case"], r["b"]) for r in rows}, key=lambda k: (CASES.index(k[0]), k[1]))
    for case, b in keys:
        pair = [r for r in rows if (r["case"], r["b"]) == (case, b)]
        eager = next(r for r in pair if r["impl"] == "eager")
        ours = [r for r in pair if r["impl"] == "mirage" and r.get("correct")
                and "median_us" in r]
        default = next((r for r in pair if r["impl"] == "mirage" and r["params"] == "default"),
                       None)
        if not ours:
            why = default.get("error", f"wrong (rel L2 {default.get('rel_l2')})") \
                if default else "not run"
            log(f"{case:<9}{b:>3}  FAILED: {why}")
            continue
        best = min(ours, key=lambda r: r["median_us"])
        ref_us = f"{default['median_us']:.2f}" if default and "median_us" in default else "-"
        pct = 100.0 * best["floor_us"] / best["median_us"]
        log(f"{case:<9}{b:>3}{best['median_us']:>10.2f}{eager['median_us']:>10.2f}"
            f"{best['floor_us']:>10.2f}{pct:>8.0f}%{eager['median_us'] / best['median_us']:>8.2f}x"
            f"  {best['params']} (default ref: {ref_us:>7})")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8, 16])
    p.add_argument("--variants", action="store_true", help="also try other tile parameters")
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--budget-s", type=float, default=480.0,
                   help="stop trying variants after this many seconds")
    p.add_argument("--out", default=os.environ.get("OUT"))
    p.add_argument("--interpret", action="store_true",
                   help="CPU dry run: reduced shapes in the Triton interpreter, no timing")
    p.add_argument("--profile", action="store_true",
                   help="one untuned call per case (heuristic configs), for running under ncu")
    p.add_argument("--params", default="",
                   help='with --profile: builder parameters as JSON, e.g. {"tile_n": 64}')
    p.add_argument("--no-defer", action="store_true",
                   help="codegen A/B: reduce accumulators' last dim in every iteration")
    args = p.parse_args(argv)
    out_dir = Path(args.out) if args.out else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    name = "profile.log" if args.profile else "interpret.log" if args.interpret else "kernels.log"
    log = Log(out_dir / name if out_dir else None)
    if args.no_defer:
        from mirage.codegen import triton_gen

        triton_gen.DEFER_MAX_NUMEL = 0
    if args.interpret:
        return dry_run(args, log)
    if args.profile:
        return profile_once(args, log)
    if not torch.cuda.is_available():
        log("no CUDA device: run with --interpret for a CPU dry run")
        return 2
    start = time.time()
    import triton

    log(f"GPU {torch.cuda.get_device_name()} | torch {torch.__version__} | triton "
        f"{triton.__version__} | {time.strftime('%Y-%m-%d %H:%M:%S')}")
    bw = copy_bandwidth()
    log(f"device-to-device copy: {bw / 1e12:.3f} TB/s (read + write)")
    pairs = [Pair(case, b, args, bw, log) for case in args.cases for b in args.batches]
    for k, pair in enumerate(pairs):  # every default reference µGraph first
        pair.run({}, seed=7 + k)
    if args.variants:  # then other tile parameters, while the budget lasts
        for pair in pairs:
            for j, params in enumerate(VARIANTS[pair.case]):
                if time.time() - start > args.budget_s:
                    log(f"  time budget spent: skipping {pair.case} b={pair.b} {params}")
                    continue
                pair.run(params, seed=100 + j)
    rows = [r for pair in pairs for r in pair.rows]
    summarize(rows, log)
    log(f"copy bandwidth {bw / 1e12:.3f} TB/s; method {METHOD}; total {time.time() - start:.0f} s")
    if out_dir:  # each file whole or not at all (temp file and rename)
        from mirage.ir.serialize import atomic_write_text

        atomic_write_text(out_dir / "kernels.jsonl", "".join(
            json.dumps({**r, "copy_bw_Bps": bw}) + "\n" for r in rows))
        fields = ["case", "b", "impl", "params", "correct", "rel_l2", "max_rel", "median_us",
                  "p10_us", "p90_us", "floor_us", "bytes", "method", "gpu", "error"]
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(out_dir / "kernels.csv", buf.getvalue())
    bad = [r for r in rows if r["impl"] == "mirage" and r["params"] == "default"
           and not r.get("correct")]
    return 1 if bad else 0


def profile_once(args, log: Log) -> int:
    """Each case once after a warm-up call: the launches for ncu to look at
    (``ncu -k regex:kernel_ --launch-skip <kernels per call>``). Built with ``--params`` (JSON)
    when given; launch configs come from the tuning cache when a timed run filled it (no
    tuning launches then), else from the heuristic."""
    params = json.loads(args.params) if args.params else {}
    for case in args.cases:
        for b in args.batches:
            shapes = SHAPES[case](b)
            fn = compile_graph(REFERENCES[case](shapes, "fp16", **params), tune=False)
            gen = torch.Generator(device="cuda").manual_seed(0)
            inputs = draw(case, shapes, gen, "cuda")
            fn(*inputs)
            fn(*inputs)
            torch.cuda.synchronize()
            configs = {s.name: (x.config.num_warps, x.config.num_stages)
                       for s, x in zip(fn.generated.kernels, fn.launches.values(), strict=True)}
            log(f"{case} b={b}: ran twice, configs {configs}")
    return 0


def dry_run(args, log: Log) -> int:
    """Compile every case at reduced shapes in the interpreter and check it (CPU only)."""
    failures = 0
    for case in args.cases:
        shapes, params = SMALL[case]
        graph = REFERENCES[case](shapes, "fp16", **params)
        fn = compile_graph(graph, mode="interpret")
        gen = torch.Generator().manual_seed(0)
        inputs = draw(case, shapes, gen, "cpu")
        ref = EAGER[case](*[x.float() for x in inputs])
        out = torch.full(ref.shape, float("nan"), dtype=torch.float16)
        fn(*inputs, out=[out])
        l2, mx = errors(out, ref)
        ok = l2 <= TOLERANCE
        failures += not ok
        log(f"{case:<9} interpret rel L2 {l2:.2e} max {mx:.2e} {'ok' if ok else 'WRONG'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
