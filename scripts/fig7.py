"""Figure 7 (and the Hopper runs) on this GPU: ``python -m scripts.fig7 --gpu a100 --batches 1,8``.

Checks that a CUDA GPU is there and is the one asked for (``--force-gpu`` files results under the
asked name anyway and records the override), measures every case x batch x implementation with
one timing method, and publishes ``results/<gpu>/``: records.jsonl, metadata.json, table.txt,
fig7.png, proposed_bands.json (see ``scripts/harness/records.py``). ``make fig7`` / ``make hopper``
call this. An interrupted run publishes nothing; ``--resume`` continues it (same GPU, code and
settings), keeping what it had measured. One run at a time per results/<gpu>/ (a lock file
beside it names the holder). Bad input ends in one ``error:`` line. Exit status: 0 done, 2 bad
input or GPU mismatch, 3 no GPU, 4 cannot time, 5 another run holds results/<gpu>/, 130
interrupted.

The µGraph set is the card's own (``saved_dir_for``: ``saved_mugraphs/a100/`` on an A100, the
flat ``saved_mugraphs/`` on an H100/H200), loaded under the card's target; ``--saved`` wins.
``--rehearse a100`` runs the A100 path on the GPU present (an H100): the A100 target and the
A100 set, results filed under ``results/a100-rehearsal/`` (never ``results/a100/``), metadata
``"rehearsal": {"as": "a100", "on": <GPU name>}``, and the table marked as a rehearsal;
``make verify`` checks its records and correctness but judges it against no bands.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import sys
import time
from pathlib import Path

from baselines import compiled
from scripts.harness import cli, metadata
from scripts.harness.cases import ATTENTION, BATCHES_A100, CASES, COMMON
from scripts.harness.lock import LockHeld, RunLock
from scripts.harness.mirage_side import SAVED_ROOT, saved_dir_for, target_for

PROG = "fig7"
REHEARSABLE = ("a100",)  # cards with a target and a µGraph set of their own


def rehearsal_dir(card: str) -> str:
    """The results folder of a rehearsal of ``card`` (never ``card``'s own)."""
    return f"{card}-rehearsal"


def rehearsal_banner(rehearsal: dict | None) -> str | None:
    """The line every output of a rehearsal carries, or None for a real run."""
    if not isinstance(rehearsal, dict):
        return None
    return (f"REHEARSAL ({str(rehearsal.get('as')).upper()} limits and µGraphs on "
            f"{rehearsal.get('on')})")


def parse_args(argv):
    p = cli.Parser(prog="python -m scripts.fig7", description=__doc__.split("\n")[0])
    p.add_argument("--gpu", default=None,
                   help="card the results are for (a100, h100, ...); default: the detected one")
    p.add_argument("--force-gpu", action="store_true",
                   help="file results under --gpu even if NVML reports another card (recorded)")
    p.add_argument("--batches", default=",".join(map(str, BATCHES_A100)),
                   help="comma list of batch sizes (default 1,8; make hopper passes 1,8,16)")
    p.add_argument("--cases", default=None, help=f"comma list of cases (default all: "
                                                 f"{','.join(CASES)})")
    p.add_argument("--baselines", default=None,
                   help="comma list of baselines (default: all that apply)")
    p.add_argument("--no-mirage", action="store_true", help="measure the baselines only")
    p.add_argument("--samples", type=cli.positive_type("--samples"), default=100,
                   help="timing samples per implementation")
    p.add_argument("--calls-per-graph", type=cli.positive_type("--calls-per-graph"), default=128,
                   help="calls captured in one CUDA graph (one sample = one replay)")
    p.add_argument("--warm", action="store_true",
                   help="also time each implementation on one input set (warm L2)")
    p.add_argument("--compile-mode", default=compiled.DEFAULT_MODE, choices=compiled.MODES,
                   help="torch.compile mode of the torch.compile baseline (recorded)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run with the same GPU, code and settings")
    p.add_argument("--seed", type=int, default=None,
                   help="input seed (default: fresh; a resumed run keeps its own)")
    p.add_argument("--device", default="cuda",
                   help="torch device (cpu only makes sense for tests with a fake timer)")
    p.add_argument("--rehearse", default=None, choices=REHEARSABLE,
                   help="rehearse this card's run on the GPU present: its target and µGraph "
                        "set, results in results/<card>-rehearsal/ (never judged by bands)")
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--saved", type=Path, default=None,
                   help="folder of the saved µGraphs (default: saved_mugraphs/<gpu>/ where it "
                        "exists, else saved_mugraphs/)")
    p.add_argument("--cache", type=Path, default=Path(".cache"))
    args = p.parse_args(argv)
    # Every value that names a card, a case or a batch size is checked before anything runs.
    args.gpu = cli.gpu_name(args.gpu)
    args.batches = cli.batches(args.batches)
    args.cases = cli.names(args.cases, list(CASES), "case")
    args.baselines = cli.names(args.baselines, list(dict.fromkeys(COMMON + ATTENTION)),
                               "baseline")
    return args


def load_timer(calls_per_graph: int):
    """The one timer every implementation is measured with, and its method name."""
    from mirage.profile.timing import METHOD, time_gpu

    def timer(fn, input_sets, samples):
        return time_gpu(fn, input_sets, calls_per_graph=calls_per_graph, samples=samples,
                        warmup=3)

    return timer, METHOD


def _fail(code: int, message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return code


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def main(argv=None, *, detect=metadata.detect_gpu, timer_loader=load_timer, nvml=None,
         compile_graph=None) -> int:
    try:
        args = parse_args(argv)
        try:
            info = detect()
        except metadata.NoGpu as e:
            return _fail(3, f"no CUDA GPU visible ({e}); this target needs one")
        gpu, override = metadata.resolve_gpu(args.gpu, info, args.force_gpu)
        rehearsal, card = None, gpu
        if args.rehearse:
            if override:
                raise cli.UsageError("--rehearse runs on the GPU present and records it; it "
                                     "does not mix with --force-gpu")
            if args.rehearse == gpu:
                raise cli.UsageError(f"this machine's GPU is an {gpu.upper()} ({info.name}): "
                                     f"run the real thing (make fig7 GPU={gpu}), not a "
                                     "rehearsal")
            card = args.rehearse
            rehearsal = {"as": card, "on": info.name}
            gpu = rehearsal_dir(card)
        saved = args.saved if args.saved is not None else saved_dir_for(card, SAVED_ROOT)
        if rehearsal and args.saved is None and saved == SAVED_ROOT:
            raise cli.UsageError(f"no {card.upper()} µGraph set in {SAVED_ROOT}/{card}/ to "
                                 f"rehearse with (make search-saved SEARCH_ARGS=\"--target "
                                 f"{card}\")")
        command = [f"python -m scripts.{PROG}", *(sys.argv[1:] if argv is None else argv)]
        with RunLock.for_dir(args.results / gpu, command):
            return _measure(args, info, gpu, override, timer_loader, nvml, compile_graph,
                            target=target_for(card).name, saved=saved, rehearsal=rehearsal)
    except (cli.UsageError, metadata.GpuMismatch) as e:
        return cli.fail(PROG, e)
    except LockHeld as e:
        return cli.fail(PROG, e, cli.BUSY)
    except KeyboardInterrupt:
        return _fail(130, "interrupted before measuring or while publishing: nothing new "
                          "published; RESUME=1 (--resume) continues what was measured")


def _measure(args, info, gpu: str, override, timer_loader, nvml, compile_graph, *,
             target: str, saved: Path, rehearsal: dict | None = None) -> int:
    """The run itself, under the lock of results/<gpu>/ (``gpu``: the folder's name,
    ``<card>-rehearsal`` for a rehearsal)."""
    cases = tuple(CASES[n] for n in CASES if args.cases is None or n in args.cases)
    batches = args.batches
    baselines = None if args.baselines is None else frozenset(args.baselines)
    try:
        timer, method = timer_loader(args.calls_per_graph)
    except Exception as e:
        return _fail(4, f"cannot time: mirage.profile.timing not importable "
                        f"({type(e).__name__}: {e})")

    # Imported here so that the checks above run (and fail cleanly) without them.
    from scripts.harness.measure import Context, Settings
    from scripts.harness.records import Staging
    from scripts.harness.run import Plan, run

    compiled.mode = args.compile_mode
    static = metadata.static_info(info, nvml)
    plan = Plan(cases, batches, baselines, not args.no_mirage, saved, args.cache, target)
    settings = Settings(seed=0, device=args.device, samples=args.samples, warm=args.warm,
                        l2_bytes=info.l2_bytes, max_sets=args.calls_per_graph)
    plan_meta = {"cases": [c.name for c in cases], "batches": list(batches),
                 "baselines": sorted(baselines) if baselines else "all applicable",
                 "mirage": plan.mirage, "calls_per_graph": args.calls_per_graph,
                 "compile_mode": args.compile_mode, "target": target, "saved": str(saved),
                 "rehearsal": rehearsal}
    # Everything the measurements depend on: only a run with the same identity is resumed.
    identity = {"gpu": gpu, "gpu_uuid": info.uuid, "method": method, "plan": plan_meta,
                "code": static["code"]["fingerprint"],
                "settings": {k: v for k, v in dataclasses.asdict(settings).items()
                             if k != "seed"}}
    staging = Staging.resume(args.results, gpu, identity) if args.resume else None
    if args.resume and staging is None:
        print(f"{PROG}: no interrupted run with these settings and this code to resume; "
              "starting afresh", file=sys.stderr)
    if staging is None:
        kept = Staging.interrupted(args.results, gpu)
        if kept and not args.resume:
            print(f"{PROG}: note: {len(kept)} interrupted run(s) of {gpu} kept in "
                  f"{args.results}/.staging-{gpu}-*; RESUME=1 continues one with these settings",
                  file=sys.stderr)
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        seed = args.seed if args.seed is not None else secrets.randbits(31)
        staging = Staging(args.results, gpu, run_id, identity, seed)
    run_id = staging.run_id
    settings = dataclasses.replace(settings, seed=staging.seed)
    meta = {"command": sys.argv, "started": _now(), "method": method,
            "gpu_info": static["gpu"], "software": static["software"], "host": static["host"],
            "code": static["code"], "commit": static["code"]["commit"], "gpu_override": override,
            "settings": dataclasses.asdict(settings), "plan": plan_meta,
            "rehearsal": rehearsal, "target": target, "saved_dir": str(saved),
            "resumed": {"records_kept": len(staging.records)} if staging.records else None,
            "nvml_before": metadata.snapshot(info, nvml)}

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    ctx = Context(gpu, run_id, meta["commit"], settings, timer, staging.add, log,
                  gpu_key=info.uuid or info.slug)
    banner = rehearsal_banner(rehearsal)
    if banner:
        log(f"{PROG}: {banner}")
    log(f"{PROG}: {plan.size()} measurements on {info.name}, results/{gpu}, run {run_id}, "
        f"µGraphs from {saved}/ under the {target} target")
    try:
        run(ctx, plan, compile_graph, skip=frozenset(staging.done()))
    except KeyboardInterrupt:
        return _fail(130, f"interrupted: nothing published; {len(staging.records)} records kept "
                          f"in {staging.dir}; continue with RESUME=1 (--resume)")
    meta["nvml_after"] = metadata.snapshot(info, nvml)
    meta["finished"] = _now()
    final = publish(staging, meta, info.name, log)
    log(f"{PROG}: published {final}/ ({len(staging.records)} records); check with: make verify")
    return 0


def publish(staging, meta: dict, gpu_name: str, log) -> Path:
    """Write the derived files (table, figure, proposed bands) and publish the run. A failure
    in a derived file is reported and loses that file only; ``python -m scripts.report``
    redraws the table and the figure from the published records."""
    from scripts.harness import checker, plot, report
    from scripts.harness.analysis import speedups

    full = {**meta, "gpu": staging.gpu, "run_id": staging.run_id}
    records = staging.records
    banner = rehearsal_banner(meta.get("rehearsal"))
    title = f"Mirage vs best baseline on {gpu_name} (run {staging.run_id})"
    derived = {
        "table.txt": lambda: (f"{banner}\n\n" if banner else "") + report.table(full, records),
        "fig7.png": lambda: plot.render(records, f"{banner}: {title}" if banner else title),
        "proposed_bands.json": lambda: json.dumps(
            checker.propose_bands(full, speedups(records)), indent=1) + "\n",
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
