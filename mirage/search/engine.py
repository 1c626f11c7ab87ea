"""The search driver: configuration, workers, time budget, checkpoints, report, cache.

``search(program, config)`` enumerates the layout classes of the first graph-defined kernel,
cuts each class's block search into ``PARTS_PER_CLASS`` parts (``BlockSearch.run``) and hands
the tasks (class, part) to worker processes (``num_workers``); each task is searched to
completion (``kernel.KernelSearch``) unless the time budget runs out. The cut does not depend on
the number of workers, so neither does the result. After every finished task the checkpoint
(the tasks done and their candidates) is rewritten atomically, so an interrupted search resumes
where it stopped and ends with the same result set. Candidates are deduplicated
by structural hash, ranked by the cost model and verified (``mirage.verify``) best first until
``keep`` are proven equivalent. Results are cached by the hash of (program, config, code).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import multiprocessing
import os
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mirage.ir import TARGETS, KernelGraph
from mirage.ir.serialize import atomic_write_text, graph_from_dict, graph_to_dict, loads
from mirage.search.block import Stats
from mirage.search.cost import estimate_seconds
from mirage.search.kernel import (
    KernelSearch,
    Limits,
    Problem,
    divisor_subsets,
    initial_prefix,
    layout_classes,
    layouts_for,
    restrict,
)
from mirage.verify import verify

CODE_VERSION = "search-7"
PARTS_PER_CLASS = 8  # tasks per layout class: one class can hold most of the work
LEADERS_PER_COUNT = 2  # tilings of each kernel count verified first (``verification_order``)
LOOPS_PER_GRID = 3  # loop ranges per grid verified before any grid's next


@dataclass(frozen=True)
class SearchConfig:
    """Everything that changes what the search returns (and so its cache key)."""

    max_kernel_ops: int = 5
    max_block_ops: int = 8  # ops and accumulators per block graph (inputs/outputs not counted)
    max_customized: int = 2
    num_workers: int = 1
    time_budget_s: float = 600.0
    use_pruning: bool = True
    allow_split: bool = True
    target: str = "h100"
    grid_hint: tuple[int, int, int] | None = None  # only layouts with this grid (first kernel)
    keep: int = 8  # verified candidates to keep, in ``verification_order``
    verify_candidates: bool = True

    def key_fields(self) -> dict:
        fields = dataclasses.asdict(self)
        fields.pop("num_workers")  # parallelism does not change the result set
        return fields


@dataclass
class Report:
    """What the search did; ``stop_reason`` is ``exhausted`` or ``time budget``."""

    classes_total: int = 0
    classes_done: int = 0
    explored: int = 0
    rejected: Counter = field(default_factory=Counter)
    candidates: int = 0
    verified: int = 0
    failed_verification: int = 0
    search_s: float = 0.0
    verify_s: float = 0.0
    stop_reason: str = "exhausted"
    resumed_classes: int = 0

    def lines(self) -> list[str]:
        rejected = ", ".join(f"{k} {v}" for k, v in sorted(self.rejected.items()))
        return [
            f"[Search] tasks (layout class x part): {self.classes_done}/{self.classes_total}"
            f" searched ({self.resumed_classes} from checkpoint)",
            f"[Search] states explored: {self.explored}",
            f"[Search] rejected per filter: {rejected or 'none'}",
            f"[Search] complete candidates: {self.candidates}; verified equivalent: "
            f"{self.verified}; failed verification: {self.failed_verification}",
            f"[Search] time: search {self.search_s:.1f} s, verification {self.verify_s:.1f} s",
            f"[Search] stop reason: {self.stop_reason}",
            f"[Search] finished. Time elapsed: {self.search_s + self.verify_s:.1f} s",
        ]


@dataclass
class SearchResult:
    program: KernelGraph
    candidates: list[KernelGraph]  # verified, best estimate first
    estimates_s: list[float]
    report: Report


def _size(graph: KernelGraph) -> int:
    return sum(len(n.block.nodes) for n in graph.nodes if n.block is not None)


def _tiling(graph: KernelGraph) -> tuple:
    return tuple((n.block.grid, n.block.forloop_range) for n in graph.nodes if n.block)


def cache_key(program: KernelGraph, config: SearchConfig) -> str:
    text = json.dumps([program.digest, config.key_fields(), CODE_VERSION], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


# --- workers -----------------------------------------------------------------------------------

_WORKER: dict = {}


def _init_worker(program_json: str, config: SearchConfig, deadline: float,
                 checkpointing: bool = False) -> None:
    program = loads(program_json).graphs[0]
    problem = Problem.of(program, TARGETS[config.target])
    prefix = initial_prefix(problem)
    classes = _classes(problem, prefix, config)
    _WORKER.update(problem=problem, prefix=prefix, classes=classes, config=config,
                   deadline=deadline, bodies={}, checkpointing=checkpointing)


def _classes(problem: Problem, prefix, config: SearchConfig) -> list[tuple]:
    """(subset, layouts) per layout class of the first kernel: subset None for kernels over
    every input, else the inputs a divisor's kernel reads (``kernel.divisor_subsets``)."""
    layouts = layouts_for(problem, prefix, config.allow_split)
    if config.grid_hint is not None:
        layouts = [lay for lay in layouts if lay.grid == tuple(config.grid_hint)]
    classes = [(None, c) for c in layout_classes(layouts, prefix.operands)]
    if config.max_customized > 1:
        for subset in divisor_subsets(problem, prefix):
            sub = restrict(prefix, subset)
            # A divisor (an RMS) has no contraction: its rows may go one per block.
            sub_layouts = layouts_for(problem, sub, allow_split=False, small_tiles=True)
            classes += [(subset, c) for c in layout_classes(sub_layouts, sub.operands)]
    return classes


def _tasks(classes: list) -> list[str]:
    return [f"{i}.{j}" for i in range(len(classes)) for j in range(PARTS_PER_CLASS)]


def _run_task(task: str) -> tuple[str, list[KernelGraph], list[dict] | None, dict, bool]:
    """Search one part of one layout class; returns (task, candidates, the candidates as dicts
    when the search writes checkpoints, stats, finished)."""
    w = _WORKER
    config: SearchConfig = w["config"]
    stats = Stats()
    limits = Limits(config.max_kernel_ops, config.max_block_ops, config.max_customized,
                    config.use_pruning, config.allow_split)
    search = KernelSearch(w["problem"], limits, stats, w["deadline"], w["bodies"])
    found = {}
    index, part = (int(x) for x in task.split("."))
    subset, layouts = w["classes"][index]
    for graph in search.search_class(w["prefix"], layouts, part, PARTS_PER_CLASS, subset):
        found.setdefault(graph.digest, graph)
    finished = not search.expired()
    graphs = list(found.values())
    # Serialised here, in parallel, and only for a checkpoint: the driver keeps the objects.
    dicts = [graph_to_dict(g) for g in graphs] if w["checkpointing"] else None
    return task, graphs, dicts, {"explored": stats.explored,
                                 "rejected": dict(stats.rejected)}, finished


# --- the driver --------------------------------------------------------------------------------


def _program_json(program: KernelGraph) -> str:
    from mirage.ir.serialize import dumps

    return dumps([program])


def _load_checkpoint(path: Path | None, key: str) -> dict:
    if path is None or not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return doc.get("done", {}) if doc.get("key") == key else {}


def search(program: KernelGraph, config: SearchConfig = SearchConfig(),
           checkpoint: str | Path | None = None, progress: bool = True) -> SearchResult:
    """Search, verify and rank µGraphs equivalent to ``program``."""
    start = time.monotonic()
    deadline = start + config.time_budget_s
    key = cache_key(program, config)
    checkpoint = Path(checkpoint) if checkpoint else None
    done: dict[str, dict] = _load_checkpoint(checkpoint, key)  # task: {"graphs", "stats"}
    report = Report(resumed_classes=len(done))
    target = TARGETS[config.target]
    found = {task: [graph_from_dict(d, target, "<checkpoint>") for d in entry["graphs"]]
             for task, entry in done.items()}
    program_json = _program_json(program)
    checkpointing = checkpoint is not None
    _init_worker(program_json, config, deadline, checkpointing)
    tasks = _tasks(_WORKER["classes"])
    report.classes_total = len(tasks)
    todo = [t for t in tasks if t not in done]

    def record(task, graphs, dicts, stats, finished):
        if not finished:
            report.stop_reason = "time budget"
            return
        found[task] = graphs
        done[task] = {"graphs": dicts, "stats": stats}
        if checkpointing:
            atomic_write_text(checkpoint, json.dumps({"key": key, "done": done}))
        if progress:
            count = sum(len(v) for v in found.values())
            print(f"\r[Search] tasks {len(done)}/{report.classes_total}, candidates {count}, "
                  f"{time.monotonic() - start:.1f} s", end="", file=sys.stderr, flush=True)

    if config.num_workers <= 1 or len(todo) <= 1:
        for task in todo:
            record(*_run_task(task))
            if time.monotonic() > deadline:
                report.stop_reason = "time budget"
                break
    else:
        with _search_context().Pool(config.num_workers, _init_worker,
                                    (program_json, config, deadline, checkpointing)) as pool:
            for result in pool.imap_unordered(_run_task, todo):
                record(*result)
    if progress:
        print(file=sys.stderr)
    unique: dict[str, KernelGraph] = {}
    for task, entry in done.items():
        report.explored += entry["stats"]["explored"]
        report.rejected.update(entry["stats"]["rejected"])
        for g in found[task]:
            unique.setdefault(g.digest, g)
    report.classes_done = len(done)
    report.candidates = len(unique)
    report.search_s = time.monotonic() - start
    ordered = verification_order(list(unique.values()), target)
    verify_start = time.monotonic()
    kept = _first_verified(program, ordered, config, report)
    report.verified = len(kept) if config.verify_candidates else 0
    report.verify_s = time.monotonic() - verify_start
    return SearchResult(program, kept, [estimate_seconds(g, target) for g in kept], report)


def verification_order(candidates: list[KernelGraph], target) -> list[KernelGraph]:
    """The order in which candidates are verified (and so kept): one body per tiling (the grid
    and loop range of every kernel), the best-estimated body, so that the GPU profile compares
    genuinely different schedules; tilings in estimate order, spread out:

    * the best ``LEADERS_PER_COUNT`` tilings of each kernel count lead: the estimate charges a
      launch and a short kernel's latency, which the GPU may repay (an RMS computed once
      instead of per block);
    * then at most ``LOOPS_PER_GRID`` loop ranges per grid before any grid's next: where the
      estimate errs it errs along the loop (the per-iteration cost of a tile size), less
      between grids;
    * then the rest.
    """
    ranked = sorted(candidates, key=lambda g: (estimate_seconds(g, target), _size(g),
                                                    g.digest))
    best_per_tiling: dict[tuple, KernelGraph] = {}
    for g in ranked:
        best_per_tiling.setdefault(_tiling(g), g)
    tilings = list(best_per_tiling.values())
    by_count: dict[int, list] = {}
    for g in tilings:
        by_count.setdefault(len(g.customized_ids), []).append(g)
    leaders = {id(g) for gs in by_count.values() for g in gs[:LEADERS_PER_COUNT]}
    firsts, rest, per_grid = [], [], Counter()
    for g in tilings:
        grid = tuple(grid for grid, _ in _tiling(g))
        if id(g) in leaders or per_grid[grid] < LOOPS_PER_GRID:
            firsts.append(g)
        else:
            rest.append(g)
        per_grid[grid] += 1
    leading = [g for g in firsts if id(g) in leaders]
    return leading + [g for g in firsts if id(g) not in leaders] + rest


def _search_context():
    """How search workers start: forked (fast: nothing to import) from a plain process, spawned
    from one running other threads. A fork copies only the calling thread, so a lock another
    thread holds stays held in the child and can deadlock it: Python threads (a thread pool left
    by Triton compiles, a server) and the native threads torch and Triton start (CUDA, OpenMP,
    compile workers) once imported."""
    busy = threading.active_count() > 1 or any(m in sys.modules for m in ("torch", "triton"))
    if os.name == "posix" and not busy:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _verify_one(args: tuple[str, str, str]) -> bool:
    program_json, graph_json, target = args
    program = loads(program_json).graphs[0]
    graph = loads(graph_json, "<candidate>", TARGETS[target]).graphs[0]
    return bool(verify(program, graph, target=TARGETS[target]))


def _first_verified(program: KernelGraph, ranked: list[KernelGraph], config: SearchConfig,
                    report: Report) -> list[KernelGraph]:
    """The first ``config.keep`` candidates of ``ranked`` that verify, in ranked order.

    With several workers the candidates are verified a batch of ``num_workers`` at a time in
    parallel (a candidate the sequential order would not reach may be verified, never kept),
    so the result is the same as verifying one after another."""
    if not config.verify_candidates:
        return ranked[: config.keep]
    kept: list[KernelGraph] = []
    if config.keep <= 0:
        return kept
    with contextlib.closing(_verdicts(program, ranked, config)) as verdicts:  # ends the pool
        for g, ok in verdicts:
            if not ok:
                report.failed_verification += 1
                continue
            kept.append(g)
            if len(kept) >= config.keep:
                break  # before the next verdict: no work beyond the last one kept
    return kept


def _verdicts(program: KernelGraph, ranked: list[KernelGraph], config: SearchConfig):
    """(candidate, equivalent?) in ranked order, computed lazily: one at a time, or a batch of
    ``num_workers`` at a time in a process pool."""
    target = TARGETS[config.target]
    if config.num_workers <= 1:
        yield from ((g, bool(verify(program, g, target=target))) for g in ranked)
        return
    from mirage.ir.serialize import dumps

    program_json = _program_json(program)
    # Fresh processes whose BLAS uses its share of the cores: forked ones inherit a BLAS pool
    # sized for the whole machine each, and eight of them thrash (GQA b=8 on 16 cores: 9.5 s
    # for one verification alone, 218 s for eight side by side).
    threads = str(max(1, (os.cpu_count() or 1) // config.num_workers))
    with _environment({name: threads for name in _BLAS_THREADS}):
        pool = multiprocessing.get_context("spawn").Pool(config.num_workers)
    with pool:
        for start in range(0, len(ranked), config.num_workers):
            batch = ranked[start : start + config.num_workers]
            jobs = [(program_json, dumps([g]), config.target) for g in batch]
            yield from zip(batch, pool.map(_verify_one, jobs), strict=True)


_BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    """Environment variables set for what starts inside (child processes), then restored."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def default_cache_dir() -> Path:
    return Path(os.environ.get("MIRAGE_CACHE", Path.home() / ".cache" / "mirage")) / "search"


def search_cached(program: KernelGraph, config: SearchConfig = SearchConfig(),
                  cache_dir: str | Path | None = None) -> SearchResult:
    """``search`` with its verified candidates cached by ``cache_key(program, config)``."""
    from mirage.ir.serialize import MugraphFormatError, load, save

    path = Path(cache_dir or default_cache_dir()) / f"{cache_key(program, config)}.json"
    target = TARGETS[config.target]
    if path.exists():
        try:
            doc = load(path, target)
        except MugraphFormatError:
            doc = None  # a damaged cache entry is recomputed, never trusted
        if doc is not None and doc.program == program:
            report = Report(stop_reason="cached", verified=len(doc.graphs))
            return SearchResult(program, list(doc.graphs),
                                [estimate_seconds(g, target) for g in doc.graphs], report)
    result = search(program, config, checkpoint=path.with_suffix(".ckpt"))
    if result.report.stop_reason == "exhausted":
        save(path, result.candidates, program=program, meta={"report": result.report.lines()})
    return result
