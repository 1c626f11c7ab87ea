"""The benchmark matrix: every case x batch x applicable implementation, measured in turn.

Each (case, b) draws one set of rotated timing inputs shared by all its implementations; every
implementation is checked on its own fresh inputs (``measure``). Progress goes to ``ctx.log``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from baselines import registry
from scripts.harness import mirage_side
from scripts.harness.analysis import MIRAGE
from scripts.harness.cases import Case
from scripts.harness.measure import Context, measure, rotation_sets


@dataclass(frozen=True)
class Plan:
    """What a run measures. ``baselines`` None: every baseline that applies to a case.
    ``target``: the card whose limits the saved µGraphs are loaded under (a100, h100)."""

    cases: tuple[Case, ...]
    batches: tuple[int, ...]
    baselines: frozenset[str] | None = None
    mirage: bool = True
    saved_dir: Path = Path("saved_mugraphs")
    cache_root: Path = Path(".cache")
    target: str = "h100"

    def implementations(self, case: Case) -> list[str]:
        names = [n for n in case.baselines if self.baselines is None or n in self.baselines]
        return names + ([MIRAGE] if self.mirage else [])

    def size(self) -> int:
        return sum(len(self.implementations(c)) for c in self.cases) * len(self.batches)


def run(ctx: Context, plan: Plan, compile_graph: Callable | None = None,
        skip: frozenset = frozenset()) -> None:
    """Measure the plan; each record goes to ``ctx.sink`` as soon as it exists. ``skip``:
    (case, batch, implementation) already measured by the interrupted run being resumed."""
    rows = registry()
    total, done, start = plan.size(), 0, time.monotonic()
    width = len(str(total))
    for case in plan.cases:
        for b in plan.batches:
            impls = plan.implementations(case)
            todo = [n for n in impls if (case.name, b, n) not in skip]
            if len(todo) < len(impls):
                done += len(impls) - len(todo)
                ctx.log(f"[{done:>{width}}/{total}] {case.name} b={b}: "
                        f"{len(impls) - len(todo)} kept from the interrupted run")
            if not todo:
                continue
            shapes = case.shapes(b)
            sets = rotation_sets(ctx, case, b, shapes)
            for name in todo:
                if name == MIRAGE:
                    def build(case=case, b=b, sets=sets):
                        return mirage_side.prepare(ctx, case, b, sets, saved_dir=plan.saved_dir,
                                                   cache_root=plan.cache_root,
                                                   compile_graph=compile_graph,
                                                   target=plan.target)
                    family, note = MIRAGE, ""
                else:
                    row = rows[name]
                    def build(row=row, case=case, shapes=shapes):
                        return row.build(case.name, shapes, ctx.settings.device)
                    family, note = row.family, row.note
                r = measure(ctx, case, b, name, family, build, sets, note)
                done += 1
                elapsed = time.strftime("%H:%M:%S", time.gmtime(time.monotonic() - start))
                ctx.log(f"[{done:>{width}}/{total} {elapsed}] {case.name} b={b} "
                        f"{name}: {r.describe()}")
            del sets
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
