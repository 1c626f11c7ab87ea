"""Check, then time, one implementation of one case: the single measuring path for everything.

Every implementation (baselines and Mirage alike) goes through ``measure``:

1. ``build`` it (``NotAvailable`` -> a ``not available`` record; ``Rejected`` -> its status;
   anything else raised -> ``error``);
2. ``check`` it on fresh random inputs (a seed no other step uses) against the fp32 reference;
   a result off by more than the case's tolerance is ``wrong`` and is never timed;
3. time it with the run's one timer (``mirage.profile.timing.time_gpu``: CUDA-graph replay of many
   calls rotating over input sets large enough to defeat L2, CUDA events, median of many
   samples), optionally also on one input set (the warm-cache number).

The timer is injected (``Context.timer``), so the CPU tests drive this exact path with a fake one.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from baselines import NotAvailable
from scripts.harness import records as rec
from scripts.harness.cases import Case, reference, relative_error, single_output

# timer(fn, input_sets, samples=...) -> object with method, median_us, p10_us, p90_us,
# samples_us, calls_per_sample (mirage.profile.timing.Timing)
Timer = Callable[..., object]


class Rejected(Exception):
    """An implementation that exists but must not be timed (e.g. every Mirage candidate was
    wrong); ``status`` is ``wrong`` or ``error``, ``detail`` goes into the record."""

    def __init__(self, status: str, message: str, detail: dict | None = None):
        super().__init__(message)
        self.status = status
        self.detail = detail or {}


@dataclass(frozen=True)
class Settings:
    """How a run measures. ``seed`` makes the run's random inputs reproducible."""

    seed: int
    device: str = "cuda"
    samples: int = 100
    profile_samples: int = 20  # for ranking Mirage candidates
    checks: int = 2  # fresh input sets each implementation is checked on
    warm: bool = False  # also time on one input set (warm L2)
    l2_bytes: int = 50 * 2**20
    max_sets: int = 128  # one set per captured call at most
    set_budget_bytes: int = 4 * 2**30


@dataclass
class Context:
    """One run: where records go and what they are stamped with."""

    gpu: str
    run_id: str
    commit: str
    settings: Settings
    timer: Timer
    sink: Callable[[rec.Record], None]  # where each record goes (the run's staging)
    log: Callable[[str], None] = print
    gpu_key: str = ""  # identifies the physical card for caches (NVML UUID)

    def record(self, case: Case, b: int, name: str, family: str, status: str,
               **fields) -> rec.Record:
        r = rec.Record(case=case.name, batch=b, implementation=name, family=family,
                       status=status, gpu=self.gpu, run_id=self.run_id, commit=self.commit,
                       timestamp=time.strftime("%Y-%m-%dT%H:%M:%S%z"), **fields)
        self.sink(r)
        return r


def seed_for(run_seed: int, *parts) -> int:
    """A seed for one use (case, batch, implementation, purpose), derived from the run's."""
    text = "/".join(str(p) for p in (run_seed, *parts))
    return int(hashlib.sha256(text.encode()).hexdigest()[:15], 16)


@dataclass(frozen=True)
class Check:
    passed: bool
    rel_err: float | None  # the worst over the checked sets; None when it raised
    error: str | None = None  # why it failed (raised, or off by more than the tolerance)
    raised: bool = False


def check(case: Case, shapes: dict, fn: Callable, seeds: list[int], device) -> Check:
    """Run ``fn`` on fresh inputs for each seed and compare with the fp32 reference."""
    worst = 0.0
    for seed in seeds:
        inputs = case.inputs(shapes, seed, device)
        try:
            with torch.no_grad():
                out = single_output(fn(*inputs))
        except Exception as e:
            return Check(False, None, f"raised {type(e).__name__}: {_line(e)}", raised=True)
        worst = max(worst, relative_error(out, reference(case, inputs)))
    if worst > case.tolerance:
        what = "non-finite output or wrong shape" if math.isinf(worst) else f"rel_err {worst:.3g}"
        return Check(False, rec.finite(worst), f"{what} > tolerance {case.tolerance:g}")
    return Check(True, worst)


def check_seeds(ctx: Context, case: Case, b: int, name: str) -> list[int]:
    return [seed_for(ctx.settings.seed, case.name, b, name, "check", i)
            for i in range(ctx.settings.checks)]


def rotation_sets(ctx: Context, case: Case, b: int, shapes: dict) -> list[list[torch.Tensor]]:
    """Input sets for timing: enough that consecutive calls do not hit in L2 (twice its size
    in total), at least 2, at most ``max_sets`` and within the memory budget."""
    s = ctx.settings
    size = case.input_bytes(shapes)
    n = max(2, math.ceil(2 * s.l2_bytes / size))
    n = min(n, s.max_sets, max(1, s.set_budget_bytes // size))
    return [case.inputs(shapes, seed_for(s.seed, case.name, b, "time", i), s.device)
            for i in range(n)]


def measure(ctx: Context, case: Case, b: int, name: str, family: str, build: Callable,
            sets: list, note: str = "") -> rec.Record:
    """Build, check and time one implementation; always returns (and stores) one record."""
    shapes = case.shapes(b)
    detail = {"note": note} if note else {}
    try:
        built = build()
    except NotAvailable as e:
        return ctx.record(case, b, name, family, rec.NOT_AVAILABLE, error=str(e), detail=detail)
    except Rejected as e:
        return ctx.record(case, b, name, family, e.status, correct=False, error=str(e),
                          detail={**detail, **e.detail})
    except Exception as e:
        return ctx.record(case, b, name, family, rec.ERROR,
                          error=f"build raised {type(e).__name__}: {_line(e)}", detail=detail)
    fn, extra = built if isinstance(built, tuple) else (built, {})
    detail.update(extra)

    result = check(case, shapes, fn, check_seeds(ctx, case, b, name), ctx.settings.device)
    if not result.passed:
        return ctx.record(case, b, name, family, rec.ERROR if result.raised else rec.WRONG,
                          correct=False, rel_err=result.rel_err, tolerance=case.tolerance,
                          error=result.error, detail=detail)
    try:
        with torch.no_grad():
            timing = ctx.timer(fn, sets, samples=ctx.settings.samples)
            warm = (ctx.timer(fn, sets[:1], samples=ctx.settings.samples).median_us
                    if ctx.settings.warm else None)
    except Exception as e:
        return ctx.record(case, b, name, family, rec.ERROR, correct=True,
                          rel_err=result.rel_err, tolerance=case.tolerance,
                          error=f"timing raised {type(e).__name__}: {_line(e)}", detail=detail)
    detail["input_sets"] = len(sets)
    return ctx.record(case, b, name, family, rec.OK, method=timing.method,
                      median_us=timing.median_us, p10_us=timing.p10_us, p90_us=timing.p90_us,
                      samples_us=tuple(timing.samples_us),
                      calls_per_sample=timing.calls_per_sample, warm_median_us=warm,
                      correct=True, rel_err=result.rel_err, tolerance=case.tolerance,
                      detail=detail)


def _line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else ""
