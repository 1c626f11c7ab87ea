"""Figure 11 on this GPU: the four decoders end to end, ``python -m scripts.fig11 --gpu h100``.

For LLaMA-3-8B, Chameleon-7B, GPT-3-7B-LoRA and nGPT-1B (``models/``; random fp16 weights, a KV
cache of 4096 tokens per sequence) at b in {1, 8, 16} on Hopper cards ({1, 8} on others), times
one decode step and layer 0 alone for three variants — PyTorch (eager, SDPA attention, in a CUDA
graph), torch.compile and Mirage (the fusable pieces as µGraphs from saved_mugraphs/models/) —
each checked against PyTorch's output first (``scripts/harness/endtoend.py``). Publishes
``<results>/fig11/<gpu>/``: records.jsonl, metadata.json (NVML, versions, code), table.txt,
fig11.png, proposed_bands.json; ``make verify`` checks it against expected/fig11_bands.json.

The run is meant to fit a few minutes: ``--budget-s`` bounds it (each model gets a fair share of
what is left; what does not fit is recorded as skipped, and the run still publishes). An
interrupted run publishes nothing; ``--resume`` continues it. One run at a time per
<results>/fig11/<gpu>/ (a lock file beside it names the holder); bad input ends in one ``error:``
line. Exit status: 0 done, 2 bad input or GPU mismatch, 3 no GPU, 4 cannot time, 5 another run
holds the directory, 130 interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import math
import secrets
import sys
import time
from pathlib import Path

from scripts.harness import cli, metadata
from scripts.harness.lock import LockHeld, RunLock
from scripts.harness.records import RECORDS, Staging

PROG = "fig11"
SUBDIR = "fig11"
HOPPER = ("h100", "h200")
CODE = metadata.MEASURED_CODE + ("models", "scripts/harness/endtoend.py")
OUTPUTS = (RECORDS, "table.txt", "fig11.png", "proposed_bands.json", "metadata.json")


class Fig11Staging(Staging):
    outputs = OUTPUTS


def parse_args(argv):
    p = cli.Parser(prog="python -m scripts.fig11", description=__doc__.split("\n")[0])
    p.add_argument("--gpu", default=None,
                   help="card the results are for (h100, a100, ...); default: the detected one")
    p.add_argument("--force-gpu", action="store_true",
                   help="file results under --gpu even if NVML reports another card (recorded)")
    p.add_argument("--batches", default=None,
                   help="comma list (default: 1,8,16 on H100/H200, else 1,8)")
    p.add_argument("--models", default=None, help="comma list (default: all four)")
    p.add_argument("--layers", type=cli.positive_type("--layers"), default=None,
                   help="build each model with at most N layers (default: all)")
    p.add_argument("--variants", default="pytorch,mirage,torch.compile",
                   help="comma list of pytorch, mirage, torch.compile")
    p.add_argument("--budget-s", type=float, default=180.0,
                   help="stop starting new measurements after this many seconds (0: none)")
    p.add_argument("--samples", type=cli.positive_type("--samples"), default=10,
                   help="timed CUDA-graph replays each")
    p.add_argument("--tune", default="quick", choices=("quick", "full", "none"),
                   help="Mirage launch-config tuning (quick: 3-4 configs per kernel)")
    p.add_argument("--compile-mode", default="default",
                   help="torch.compile mode of the torch.compile variant (recorded)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run with the same GPU, code and settings")
    p.add_argument("--seed", type=int, default=None,
                   help="weights and inputs seed (default: fresh; a resumed run keeps its own)")
    p.add_argument("--device", default="cuda",
                   help="torch device (cpu: tests only, with the Triton interpreter)")
    p.add_argument("--results", type=Path, default=Path("results"),
                   help="results root; this run publishes <results>/fig11/<gpu>/")
    p.add_argument("--saved", type=Path, default=Path("saved_mugraphs"))
    args = p.parse_args(argv)
    args.gpu = cli.gpu_name(args.gpu)
    if args.batches is not None:
        args.batches = cli.batches(args.batches)
    if not math.isfinite(args.budget_s) or args.budget_s < 0:
        raise cli.UsageError(f"--budget-s {args.budget_s} is not a number of seconds >= 0")
    return args


def load_timer():
    """The one timer (CUDA-graph replay, events) and its method name."""
    from mirage.profile.timing import METHOD, time_gpu

    def timer(fn, input_sets, calls_per_graph, samples):
        return time_gpu(fn, input_sets, calls_per_graph=calls_per_graph, samples=samples,
                        warmup=2)

    return timer, METHOD


def _fail(code: int, message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return code


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def main(argv=None, *, detect=metadata.detect_gpu, timer_loader=load_timer, nvml=None,
         models=None) -> int:
    try:
        args = parse_args(argv)
        from models import configs
        from scripts.harness.endtoend_report import IMPLEMENTATIONS

        table = models or configs.MODELS
        picked = [table[n] for n in (cli.names(args.models, list(table), "model") or table)]
        variants = tuple(cli.names(args.variants, list(IMPLEMENTATIONS), "--variants value") or ())
        if not variants:
            raise cli.UsageError(f"--variants names none of {', '.join(IMPLEMENTATIONS)}")
        try:
            info = detect()
        except metadata.NoGpu as e:
            return _fail(3, f"no CUDA GPU visible ({e}); this target needs one")
        gpu, override = metadata.resolve_gpu(args.gpu, info, args.force_gpu)
        batches = args.batches or cli.batches("1,8,16" if gpu in HOPPER else "1,8")
        command = [f"python -m scripts.{PROG}", *(sys.argv[1:] if argv is None else argv)]
        with RunLock.for_dir(args.results / SUBDIR / gpu, command):
            return _measure(args, info, gpu, override, picked, batches, variants, timer_loader,
                            nvml)
    except (cli.UsageError, metadata.GpuMismatch) as e:
        return cli.fail(PROG, e)
    except LockHeld as e:
        return cli.fail(PROG, e, cli.BUSY)
    except KeyboardInterrupt:
        return _fail(130, "interrupted before measuring or while publishing: nothing new "
                          "published; RESUME=1 (--resume) continues what was measured")


def _measure(args, info, gpu, override, picked, batches, variants, timer_loader, nvml) -> int:
    """The run itself, under the lock of <results>/fig11/<gpu>/."""
    try:
        timer, method = timer_loader()
    except Exception as e:
        return _fail(4, f"cannot time: mirage.profile.timing not importable "
                        f"({type(e).__name__}: {e})")

    from scripts.harness.endtoend import Context, Plan, Settings, replace_layers, run

    plan = Plan(replace_layers(picked, args.layers), batches, variants, args.saved, args.tune,
                args.compile_mode)
    cpu = args.device == "cpu"
    settings = Settings(seed=0, device=args.device, samples=args.samples,
                        budget_s=args.budget_s, mirage_mode="interpret" if cpu else "gpu",
                        compile_backend="eager" if cpu else "inductor")
    static = metadata.static_info(info, nvml, CODE)
    identity = {"gpu": gpu, "gpu_uuid": info.uuid, "method": method, "plan": plan.meta(),
                "code": static["code"]["fingerprint"],
                "settings": {k: v for k, v in dataclasses.asdict(settings).items()
                             if k not in ("seed", "budget_s")}}
    root = args.results / SUBDIR
    staging = Fig11Staging.resume(root, gpu, identity) if args.resume else None
    if args.resume and staging is None:
        print(f"{PROG}: no interrupted run with these settings and this code to resume; "
              "starting afresh", file=sys.stderr)
    if staging is None:
        kept = Staging.interrupted(root, gpu)
        if kept and not args.resume:
            print(f"{PROG}: note: {len(kept)} interrupted run(s) of {gpu} kept in "
                  f"{root}/.staging-{gpu}-*; RESUME=1 continues one with these settings",
                  file=sys.stderr)
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        seed = args.seed if args.seed is not None else secrets.randbits(31)
        staging = Fig11Staging(root, gpu, run_id, identity, seed)
    settings = dataclasses.replace(settings, seed=staging.seed)
    meta = {"command": sys.argv, "started": _now(), "method": method, "figure": "fig11",
            "gpu_info": static["gpu"], "software": static["software"], "host": static["host"],
            "code": static["code"], "commit": static["code"]["commit"], "gpu_override": override,
            "settings": dataclasses.asdict(settings), "plan": plan.meta(),
            "resumed": {"records_kept": len(staging.records)} if staging.records else None,
            "nvml_before": metadata.snapshot(info, nvml)}

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    ctx = Context(gpu, staging.run_id, meta["commit"], settings, timer, staging.add, log)
    log(f"{PROG}: {plan.size()} measurements on {info.name}, {root}/{gpu}, run "
        f"{staging.run_id}, budget {args.budget_s:.0f} s")
    try:
        run(ctx, plan, skip=frozenset(staging.done()))
    except KeyboardInterrupt:
        return _fail(130, f"interrupted: nothing published; {len(staging.records)} records kept "
                          f"in {staging.dir}; continue with RESUME=1 (--resume)")
    meta["nvml_after"] = metadata.snapshot(info, nvml)
    meta["finished"] = _now()
    final = publish(staging, meta, info.name, log)
    log(f"{PROG}: published {final}/ ({len(staging.records)} records); check with: make verify")
    return 0


def publish(staging, meta: dict, gpu_name: str, log) -> Path:
    """Write the derived files (each may fail alone, losing only itself) and publish."""
    from scripts.harness import checker
    from scripts.harness import endtoend_report as report

    full = {**meta, "gpu": staging.gpu, "run_id": staging.run_id}
    records = staging.records
    derived = {
        "table.txt": lambda: report.table(full, records),
        "fig11.png": lambda: report.render(records, f"End-to-end decode, speedup over PyTorch, "
                                                    f"on {gpu_name} (run {staging.run_id})"),
        "proposed_bands.json": lambda: json.dumps(
            checker.propose_bands(full, report.speedups(records)), indent=1) + "\n",
    }
    for name, make in derived.items():
        try:
            content = make()
        except Exception as e:
            log(f"{PROG}: {name} not written ({type(e).__name__}: {e})")
            continue
        if isinstance(content, bytes):
            staging.write_bytes(name, content)
        else:
            staging.write_text(name, content)
            if name == "table.txt":
                print(content)
    return staging.publish(meta)


if __name__ == "__main__":
    sys.exit(main())
