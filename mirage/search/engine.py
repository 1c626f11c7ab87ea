"""The search driver: configuration, workers, time budget, checkpoints, report.

``search(program, config)`` enumerates the layout classes of the first graph-defined kernel,
cuts each class's block search into ``PARTS_PER_CLASS`` parts (``BlockSearch.run``) and hands
the tasks (class, part) to worker processes (``num_workers``); each task is searched to
completion (``kernel.KernelSearch``) unless the time budget runs out. The cut does not depend on
the number of workers, so neither does the result. After every finished task the checkpoint
(``mirage.search.checkpoint``: the tasks done and their candidates) is rewritten atomically, so
an interrupted search resumes where it stopped and ends with the same result set. Candidates
are deduplicated by structural hash, ranked by the cost model and verified (``mirage.verify``)
best first until ``keep`` are proven equivalent. The input program itself, run as its
pre-defined kernels, is always the last candidate: the answer is never empty. Results are
cached by ``mirage.search.cache``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mirage.errors import InputError
from mirage.files import atomic_write_text
from mirage.ir import TARGETS, KernelGraph
from mirage.ir.serialize import graph_to_dict, loads
from mirage.search import checkpoint as ckpt
from mirage.search.block import Stats
from mirage.search.checkpoint import CheckpointError, StaleCheckpoint, cache_key
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
from mirage.search.workers import (
    BLAS_THREADS,
    MAIN_GUARD_HINT,
    environment,
    ignore_interrupts,
    search_context,
    workers_usable,
)
from mirage.verify import verify

__all__ = ["CheckpointError", "Report", "SearchConfig", "SearchResult", "cache_key", "search",
           "verification_order"]

_search_context = search_context  # the name tests and scripts know
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

    def check(self) -> None:
        """Raise ``InputError`` naming the first setting no search can run with."""
        for name in ("max_kernel_ops", "max_block_ops", "max_customized", "num_workers", "keep"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{name}: must be a whole number >= 1, got {value!r}")
        budget = self.time_budget_s
        if not isinstance(budget, (int, float)) or not budget >= 0 or budget == float("inf"):
            raise InputError(f"time_budget_s: must be a finite number of seconds >= 0, "
                             f"got {budget!r}")
        if self.target not in TARGETS:
            raise InputError(f"target: unknown {self.target!r} (one of "
                             f"{', '.join(sorted(TARGETS))})")


@dataclass
class Report:
    """What the search did; ``stop_reason`` is ``exhausted``, ``time budget`` or ``cached``;
    ``why_none`` says why no searched candidate was kept (empty when one was)."""

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
    why_none: str = ""

    def lines(self) -> list[str]:
        rejected = ", ".join(f"{k} {v}" for k, v in sorted(self.rejected.items()))
        lines = [
            f"[Search] tasks (layout class x part): {self.classes_done}/{self.classes_total}"
            f" searched ({self.resumed_classes} from checkpoint)",
            f"[Search] states explored: {self.explored}",
            f"[Search] rejected per filter: {rejected or 'none'}",
            f"[Search] complete candidates: {self.candidates}; verified equivalent: "
            f"{self.verified}; failed verification: {self.failed_verification}",
            f"[Search] answer: {self.verified} searched candidate"
            f"{'s' * (self.verified != 1)} + the input program as written",
        ]
        if self.why_none:
            lines.append(f"[Search] no searched candidate: {self.why_none}")
        return lines + [
            f"[Search] time: search {self.search_s:.1f} s, verification {self.verify_s:.1f} s",
            f"[Search] stop reason: {self.stop_reason}",
            f"[Search] finished. Time elapsed: {self.search_s + self.verify_s:.1f} s",
        ]


@dataclass
class SearchResult:
    """``candidates``: the verified searched candidates in ``verification_order``, then the
    input program (run as its pre-defined kernels), so never empty; ``estimates_s`` matches it.
    ``searched``: the searched candidates alone."""

    program: KernelGraph
    candidates: list[KernelGraph]
    estimates_s: list[float]
    report: Report
    searched: list[KernelGraph] = field(default_factory=list)


def answer(program: KernelGraph, searched: list[KernelGraph], report: Report,
           target) -> SearchResult:
    """The result of a search that kept ``searched``: those, then the program itself."""
    candidates = list(searched)
    if all(g.digest != program.digest for g in candidates):
        candidates.append(program)
    return SearchResult(program, candidates, [estimate_seconds(g, target) for g in candidates],
                        report, list(searched))


def _size(graph: KernelGraph) -> int:
    return sum(len(n.block.nodes) for n in graph.nodes if n.block is not None)


def _tiling(graph: KernelGraph) -> tuple:
    return tuple((n.block.grid, n.block.forloop_range) for n in graph.nodes if n.block)


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


def _init_pool_worker(*args) -> None:
    ignore_interrupts()
    _init_worker(*args)


def _pool_task(task: str):
    """``_run_task`` in a pool worker; an interrupt there comes back as None, so the driver
    stops (a worker dying of it would leave its task unanswered and the pool waiting)."""
    try:
        return _run_task(task)
    except KeyboardInterrupt:
        return None


# --- the driver --------------------------------------------------------------------------------


def _program_json(program: KernelGraph) -> str:
    from mirage.ir.serialize import dumps

    return dumps([program])


def _open_checkpoint(path: Path | None, program: KernelGraph, config: SearchConfig,
                     tasks: set[str], restart: bool) -> tuple[dict, dict]:
    """(done, found) to resume from; with ``restart`` (or a checkpoint of other code) an
    existing file is moved to ``<path>.bak`` and the search starts over."""
    if path is None:
        return {}, {}
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    if restart:
        if path.exists():
            bak = ckpt.backup(path)
            print(f"note: starting over; the old checkpoint is kept as {bak}", file=sys.stderr)
        return {}, {}
    try:
        return ckpt.read(path, program, config, TARGETS[config.target], tasks)
    except StaleCheckpoint as e:
        bak = ckpt.backup(path)
        print(f"warning: {e}: starting over; the old file is kept as {bak}", file=sys.stderr)
        return {}, {}


def search(program: KernelGraph, config: SearchConfig = SearchConfig(),
           checkpoint: str | Path | None = None, progress: bool = True,
           restart: bool = False) -> SearchResult:
    """Search, verify and rank µGraphs equivalent to ``program``.

    ``checkpoint`` is resumed from (it must belong to this program and these settings, else
    ``CheckpointError``) and rewritten after every finished task; ``restart`` starts over,
    keeping an existing checkpoint as ``<checkpoint>.bak``. An interrupt (KeyboardInterrupt)
    propagates with the checkpoint holding every finished task."""
    if not isinstance(program, KernelGraph):
        raise InputError(f"program: expected a KernelGraph, got {type(program).__name__}")
    config.check()
    if config.num_workers > 1 and not workers_usable():
        print(f"warning: num_workers={config.num_workers} ignored, searching in this process: "
              f"{MAIN_GUARD_HINT}", file=sys.stderr)
        config = dataclasses.replace(config, num_workers=1)
    start = time.monotonic()
    deadline = start + config.time_budget_s
    target = TARGETS[config.target]
    path = Path(checkpoint) if checkpoint else None
    program_json = _program_json(program)
    _init_worker(program_json, config, deadline, path is not None)
    tasks = _tasks(_WORKER["classes"])
    done, found = _open_checkpoint(path, program, config, set(tasks), restart)
    report = Report(resumed_classes=len(done), classes_total=len(tasks))
    todo = [t for t in tasks if t not in done]

    def record(task, graphs, dicts, stats, finished):
        if not finished:
            report.stop_reason = "time budget"
            return
        found[task] = graphs
        done[task] = {"graphs": dicts, "stats": stats}
        if path is not None:
            atomic_write_text(path, ckpt.dumps(program, config, done))
        if progress:
            count = sum(len(v) for v in found.values())
            print(f"\r[Search] tasks {len(done)}/{report.classes_total}, candidates {count}, "
                  f"{time.monotonic() - start:.1f} s", end="", file=sys.stderr, flush=True)

    try:
        _run_tasks(todo, record, report, config, (program_json, config, deadline,
                                                  path is not None))
    finally:
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
    report.why_none = "" if kept else _why_none(report, config, len(ordered))
    return answer(program, kept, report, target)


def _run_tasks(todo: list[str], record, report: Report, config: SearchConfig,
               init_args: tuple) -> None:
    deadline = init_args[2]
    if config.num_workers <= 1 or len(todo) <= 1:
        for task in todo:
            record(*_run_task(task))
            if time.monotonic() > deadline:
                report.stop_reason = "time budget"
                break
        return
    with search_context().Pool(config.num_workers, _init_pool_worker, init_args) as pool:
        for result in pool.imap_unordered(_pool_task, todo):
            if result is None:
                raise KeyboardInterrupt
            record(*result)


def _why_none(report: Report, config: SearchConfig, tried: int) -> str:
    """Why no searched candidate was kept, from what the report counted; ``tried``: the
    candidates in verification order (one per tiling)."""
    if report.classes_total == 0:
        return ("no layout class: no tiling of the first kernel fits (no dim divisible by a "
                "tile, or too little shared memory)")
    if report.classes_done == 0:
        return "time budget before any task finished"
    partial = "" if report.stop_reason == "exhausted" else (
        f" in the {report.classes_done} of {report.classes_total} tasks searched before the "
        f"time budget")
    if report.candidates == 0:
        return (f"no complete candidate within the limits (max_kernel_ops "
                f"{config.max_kernel_ops}, max_block_ops {config.max_block_ops}, "
                f"max_customized {config.max_customized}){partial}")
    if config.verify_candidates and report.failed_verification >= tried:
        return (f"every complete candidate failed verification ({tried} verified: the best "
                f"body of each tiling, of {report.candidates}){partial}")
    return f"none kept{partial}"


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
    if config.num_workers <= 1 or len(ranked) <= 1:
        yield from ((g, bool(verify(program, g, target=target))) for g in ranked)
        return
    from mirage.ir.serialize import dumps

    program_json = _program_json(program)
    # Fresh processes whose BLAS uses its share of the cores: forked ones inherit a BLAS pool
    # sized for the whole machine each, and eight of them thrash (GQA b=8 on 16 cores: 9.5 s
    # for one verification alone, 218 s for eight side by side).
    threads = str(max(1, (os.cpu_count() or 1) // config.num_workers))
    with environment({name: threads for name in BLAS_THREADS}):
        pool = multiprocessing.get_context("spawn").Pool(config.num_workers, ignore_interrupts)
    with pool:
        for start in range(0, len(ranked), config.num_workers):
            batch = ranked[start : start + config.num_workers]
            jobs = [(program_json, dumps([g]), config.target) for g in batch]
            yield from zip(batch, pool.map(_verify_one, jobs), strict=True)
