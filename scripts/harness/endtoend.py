"""Figure 11's measuring loop: every model x batch x variant, checked, then timed.

For each model (one at a time: two 8B models do not fit together) the weights are drawn from
the run's seed; for each batch size a KV cache and tokens are drawn, PyTorch's eager step gives
the reference logits and layer-0 output, and each variant is built, checked against them and
timed twice: the whole decode step and layer 0 alone, each in a CUDA graph
(``mirage.profile.timing.time_gpu``). Every outcome is a record at once (``ctx.sink``): ok, wrong
(never timed), error, or not available with the reason — a model or batch that does not fit in
memory, or that the time budget left no room for, is ``skipped: <why>``; an out-of-memory error
frees what it can and the run goes on.

Two passes over the models (``phases``): ``pytorch`` and ``mirage`` first, then
``torch.compile``, whose compiling is the slowest part of a run, with what is left (the same
seed redraws the same weights). In each pass every model gets an equal share of the budget left
when it starts, so a slow first model cannot starve the others.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from models.configs import ModelConfig
from models.decoder import (
    ATTENTION_FORMS,
    CompiledVariant,
    Decoder,
    TorchPieces,
    Variant,
    compile_fns,
    random_cache,
)
from models.decoder import relative_error as rel_err
from models.mirage_variant import fold, prepare
from scripts.harness import records as rec
from scripts.harness.endtoend_report import (
    COMPILED,
    LAYER,
    LAYER_TOLERANCE,
    MIRAGE,
    REFERENCE,
    STEP_TOLERANCE,
)

VARIANTS = (REFERENCE, MIRAGE, COMPILED)
FAMILY = {REFERENCE: "pytorch", COMPILED: "pytorch", MIRAGE: "mirage"}
GiB = 2**30


@dataclass(frozen=True)
class Plan:
    models: tuple[ModelConfig, ...]
    batches: tuple[int, ...]
    variants: tuple[str, ...] = VARIANTS
    saved_dir: Path = Path("saved_mugraphs")
    tune: str = "quick"  # Mirage launch configs: quick | full | none
    compile_mode: str = "default"

    def size(self) -> int:
        return 2 * len(self.models) * len(self.batches) * len(self.variants)

    def meta(self) -> dict:
        return {"models": [m.name for m in self.models], "layers": [m.layers for m in
                                                                    self.models],
                "batches": list(self.batches), "variants": list(self.variants),
                "kv_len": self.models[0].kv_len if self.models else None, "tune": self.tune,
                "compile_mode": self.compile_mode, "step_tolerance": STEP_TOLERANCE,
                "layer_tolerance": LAYER_TOLERANCE}


@dataclass(frozen=True)
class Settings:
    seed: int
    device: str = "cuda"
    mirage_mode: str = "gpu"  # "interpret" for the CPU tests
    compile_backend: str = "inductor"  # "eager" for the CPU tests
    samples: int = 10
    step_calls: int = 2  # decode steps per CUDA graph (a step is milliseconds)
    layer_calls: int = 16
    piece_calls: int = 8  # for choosing between a µGraph and the torch op
    piece_samples: int = 10
    budget_s: float = 0.0  # 0: no budget
    margin_bytes: int = 3 * GiB  # kept free for activations, graphs, workspaces


@dataclass
class Context:
    gpu: str
    run_id: str
    commit: str
    settings: Settings
    timer: Callable  # timer(fn, input_sets, calls_per_graph, samples) -> Timing
    sink: Callable[[rec.Record], None]
    log: Callable[[str], None] = print
    # (model, b) -> (SDPA form, its timings): chosen once, kept for the torch.compile pass
    attention_forms: dict = dataclasses.field(default_factory=dict)

    def record(self, case: str, b: int, impl: str, status: str, **fields) -> rec.Record:
        r = rec.Record(case=case, batch=b, implementation=impl, family=FAMILY.get(impl, impl),
                       status=status, gpu=self.gpu, run_id=self.run_id, commit=self.commit,
                       timestamp=time.strftime("%Y-%m-%dT%H:%M:%S%z"), **fields)
        self.sink(r)
        return r


class Progress:
    """What is measured (kept from an interrupted run, or recorded now), the clock, the log."""

    def __init__(self, ctx: Context, total: int, skip: frozenset):
        self.ctx, self.total, self.skip = ctx, total, skip
        self.seen: set[tuple[str, int, str]] = set()
        self.start = time.monotonic()
        self.end = self.start + ctx.settings.budget_s if ctx.settings.budget_s else math.inf

    def elapsed(self) -> str:
        return time.strftime("%M:%S", time.gmtime(time.monotonic() - self.start))

    def log(self, text: str) -> None:
        done = len(self.skip) + len(self.seen)
        self.ctx.log(f"[{done:>3}/{self.total} {self.elapsed()}] {text}")

    def todo(self, case: str, b: int, impl: str) -> bool:
        return (case, b, impl) not in self.skip and (case, b, impl) not in self.seen

    def tracking(self, sink: Callable[[rec.Record], None]) -> Callable[[rec.Record], None]:
        def track(r: rec.Record) -> None:
            sink(r)
            self.seen.add((r.case, r.batch, r.implementation))

        return track


def _free_bytes(device: torch.device) -> float:
    if device.type != "cuda":
        return math.inf
    return float(torch.cuda.mem_get_info(device)[0])


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _gib(n: float) -> str:
    return f"{n / GiB:.1f} GiB"


def phases(variants: tuple[str, ...]) -> list[tuple[str, ...]]:
    """PyTorch and Mirage for every model first, torch.compile (minutes of compiling) after,
    with what the budget has left: the figure's own bars come first."""
    first = tuple(v for v in variants if v != COMPILED)
    return [p for p in (first, (COMPILED,) if COMPILED in variants else ()) if p]


def run(ctx: Context, plan: Plan, skip: frozenset = frozenset()) -> None:
    """Measure the plan; ``skip``: (case, batch, implementation) kept from an interrupted run."""
    prog = Progress(ctx, plan.size(), skip)
    ctx = dataclasses.replace(ctx, sink=prog.tracking(ctx.sink))
    prog.log(f"{len(plan.models)} models x b in {list(plan.batches)} x {list(plan.variants)}")
    for variants in phases(plan.variants):
        for k, cfg in enumerate(plan.models):
            share = (prog.end - time.monotonic()) / (len(plan.models) - k)
            deadline = time.monotonic() + share if math.isfinite(share) else math.inf
            failure = None
            try:
                _run_model(ctx, plan, cfg, prog, deadline, variants)
            except Exception as e:  # one model's failure (a bug, a CUDA error) loses only it
                failure = f"{type(e).__name__}: {_first(e)}"
            if failure is not None:
                prog.log(f"{cfg.name}: failed: {failure}")
                _release(torch.device(ctx.settings.device))
                _skip_all(ctx, prog, cfg, plan.batches, variants, f"the run failed ({failure})",
                          rec.ERROR)


def _skip_all(ctx, prog, cfg, batches, variants, why: str, status: str = rec.NOT_AVAILABLE
              ) -> None:
    """Record every (case, b, variant) not yet recorded as skipped (or ``status``) for ``why``."""
    for b in batches:
        for v in variants:
            for case in (cfg.name, cfg.name + LAYER):
                if prog.todo(case, b, v):
                    error = f"skipped: {why}" if status == rec.NOT_AVAILABLE else why
                    ctx.record(case, b, v, status, error=error, detail={"layers": cfg.layers})


def _run_model(ctx: Context, plan: Plan, cfg: ModelConfig, prog: Progress,
               deadline: float, variants: tuple[str, ...]) -> None:
    s, device = ctx.settings, torch.device(ctx.settings.device)
    todo_b = [b for b in plan.batches if any(prog.todo(c, b, v) for v in variants
                                             for c in (cfg.name, cfg.name + LAYER))]
    if not todo_b:
        return
    if time.monotonic() > deadline:
        _skip_all(ctx, prog, cfg, todo_b, variants, "the run's time budget was spent")
        return
    folded_bytes = cfg.folded_bytes() if MIRAGE in variants else 0
    need = cfg.weight_bytes() + folded_bytes + cfg.kv_bytes(min(todo_b)) + s.margin_bytes
    free = _free_bytes(device)
    if need > free:
        _skip_all(ctx, prog, cfg, todo_b, variants,
                  f"needs {_gib(need)} (weights {_gib(cfg.weight_bytes())}, folded copies "
                  f"{_gib(folded_bytes)}, KV cache at b={min(todo_b)} "
                  f"{_gib(cfg.kv_bytes(min(todo_b)))}), {_gib(free)} free")
        return
    prog.log(f"{cfg.name}: {cfg.layers} layers, {cfg.params() / 1e9:.2f} B parameters, "
             f"drawing weights")
    failure = None
    try:
        state = {"model": Decoder(cfg, device, seed=s.seed), "folded": None, "compiled": None}
    except torch.cuda.OutOfMemoryError as e:
        failure = f"out of memory for the weights ({_first(e)})"
    if failure is not None:
        _release(device)
        _skip_all(ctx, prog, cfg, todo_b, variants, failure)
        return
    if COMPILED in variants:
        torch._dynamo.reset()  # fresh graphs per model: shapes differ, no recompile limits
    try:
        for b in todo_b:
            if time.monotonic() > deadline:
                _skip_all(ctx, prog, cfg, [b], variants,
                          "this model's share of the time budget was spent")
                continue
            kv_free = _free_bytes(device) - s.margin_bytes
            if cfg.kv_bytes(b) > kv_free:
                _skip_all(ctx, prog, cfg, [b], variants,
                          f"KV cache at b={b} needs {_gib(cfg.kv_bytes(b))}, "
                          f"{_gib(max(0, kv_free))} free beside the weights")
                continue
            _run_batch(ctx, plan, cfg, b, state, prog, deadline, variants)
            _release(device)
    finally:
        state.clear()
        _release(device)


def _run_batch(ctx, plan, cfg, b, state, prog, deadline, variants) -> None:
    s, device = ctx.settings, torch.device(ctx.settings.device)
    model = state["model"]
    failure = None
    try:
        cache = state["cache"] = random_cache(cfg, b, device, seed=s.seed + 1)
        gen = torch.Generator(device=device).manual_seed(s.seed + 2)
        tokens = torch.randint(0, cfg.vocab, (b,), generator=gen, device=device)
        with torch.no_grad():
            _attention_form(ctx, model, cache)
            base = Variant(model, cache)
            ref_step = base.step(tokens)
            x0 = base.embed(tokens)
            ref_layer = base.layer(x0)
    except torch.cuda.OutOfMemoryError as e:
        failure = (rec.NOT_AVAILABLE,
                   f"out of memory for the KV cache and the reference step ({_first(e)})")
    except Exception as e:
        failure = (rec.ERROR, f"the reference step raised {type(e).__name__}: {_first(e)}")
    if failure is not None:
        state.pop("cache", None)
        _release(device)
        _skip_all(ctx, prog, cfg, [b], variants, failure[1], failure[0])
        return
    for v in variants:
        cases = [c for c in (cfg.name, cfg.name + LAYER) if prog.todo(c, b, v)]
        if not cases:
            continue
        if time.monotonic() > deadline:
            _skip_all(ctx, prog, cfg, [b], [v], "this model's share of the time budget was "
                                                "spent")
            continue
        prog.log(f"{cfg.name} b={b} {v}")
        for r in _measure(ctx, plan, cfg, b, v, state, cases, (tokens, x0),
                          (ref_step, ref_layer)):
            prog.log(f"{r.case} b={b} {v}: {r.describe()}"
                     + (f", rel_err {r.rel_err:.1e}" if r.rel_err else ""))
        _release(device)
    state.pop("cache", None)


def _attention_form(ctx: Context, model: Decoder, cache) -> None:
    """Give the baseline the faster SDPA form for grouped-query attention at this batch
    (``TorchPieces``): both timed on the first layers' caches, the choice kept per (model, b)."""
    cfg, b = model.cfg, cache.batch
    key = (cfg.name, b)
    if key not in ctx.attention_forms:
        timings = {}
        if cfg.group > 1:
            gen = torch.Generator(device=cache.k[0].device).manual_seed(ctx.settings.seed + 4)
            q = torch.randn(b, cfg.heads, cfg.head_dim, generator=gen,
                            device=cache.k[0].device).half()
            sets = [(q, cache.k[i], cache.v[i]) for i in range(min(4, cfg.layers))]
            for form in ATTENTION_FORMS:
                fn = TorchPieces(cfg, form).attend
                try:
                    timings[form] = round(ctx.timer(fn, sets, ctx.settings.piece_calls,
                                                    ctx.settings.piece_samples).median_us, 2)
                except Exception as e:  # a form SDPA has no kernel for here is not a choice
                    ctx.log(f"  SDPA form {form} failed: {type(e).__name__}: {_first(e)}")
        best = min(timings, key=timings.get) if timings else "rows"
        ctx.attention_forms[key] = (best, timings)
        if timings:
            ctx.log(f"  SDPA form for {cfg.name} b={b}: {best} "
                    f"({', '.join(f'{k} {v:.1f} us' for k, v in timings.items())})")
    model.attention_form = ctx.attention_forms[key][0]


def _build(plan, cfg, v, state, cache, ctx, detail) -> Variant:
    s = ctx.settings
    model = state["model"]
    form, timings = ctx.attention_forms[(cfg.name, cache.batch)]
    detail["attention_form"] = form
    if timings:
        detail["attention_forms_us"] = timings
    if v == REFERENCE:
        return Variant(model, cache)
    if v == COMPILED:
        if state["compiled"] is None:
            state["pieces"] = TorchPieces(cfg, form)
            state["compiled"] = compile_fns(cfg, state["pieces"], model.rope,
                                            plan.compile_mode, s.compile_backend)
        state["pieces"].attention_form = form  # Dynamo guards on it: a new form recompiles
        detail["compile_mode"] = plan.compile_mode
        return CompiledVariant(model, cache, state["compiled"], pieces=state["pieces"])
    if state["folded"] is None:
        state["folded"] = fold(model)

    def piece_timer(fn, sets):
        return ctx.timer(fn, sets, s.piece_calls, s.piece_samples).median_us

    variant = prepare(model, cache, saved_dir=plan.saved_dir, folded=state["folded"],
                      mode=s.mirage_mode, tune=plan.tune, timer=piece_timer, seed=s.seed + 3,
                      policy="fastest", log=ctx.log)
    detail["pieces"] = variant.detail()
    return variant


def _measure(ctx, plan, cfg, b, v, state, cases, inputs, refs) -> list:
    """Build, check and time one variant for ``cases`` (its step and/or layer rows still to
    do); returns their records. ``inputs``: (tokens, x0); ``refs``: PyTorch's outputs."""
    s = ctx.settings
    base = {"layers": cfg.layers, "kv_len": cfg.kv_len}
    todo = [c for c in ((cfg.name, "step", STEP_TOLERANCE),
                        (cfg.name + LAYER, "layer", LAYER_TOLERANCE)) if c[0] in cases]
    tokens, x0 = inputs
    detail: dict = {}
    start = time.monotonic()
    failure = None
    try:
        variant = _build(plan, cfg, v, state, state["cache"], ctx, detail)
        with torch.no_grad():
            outs = {"step": variant.step(tokens), "layer": variant.layer(x0)}
        detail["build_s"] = round(time.monotonic() - start, 1)
    except torch.cuda.OutOfMemoryError as e:
        failure = (rec.NOT_AVAILABLE, f"skipped: out of memory building {v} ({_first(e)})")
    except Exception as e:
        failure = (rec.ERROR, f"build raised {type(e).__name__}: {_first(e)}")
    if failure is not None:  # outside the except: the traceback's tensors are gone by now
        _release(torch.device(s.device))
        return [ctx.record(c, b, v, failure[0], error=failure[1], detail={**base, **detail})
                for c, *_ in todo]
    refs = dict(zip(("step", "layer"), refs, strict=True))
    inputs = {"step": (tokens,), "layer": (x0,)}
    calls = {"step": s.step_calls, "layer": s.layer_calls}
    fns = {"step": variant.step, "layer": variant.layer}
    out = []
    for case, scope, tol in todo:
        d = {**base, **detail, "scope": scope}
        err = rel_err(outs[scope], refs[scope])
        if not err <= tol:
            what = "non-finite output" if math.isinf(err) else f"rel_err {err:.3g}"
            out.append(ctx.record(case, b, v, rec.WRONG, correct=False, rel_err=rec.finite(err),
                                  tolerance=tol, error=f"{what} > {tol:g} against pytorch",
                                  detail=d))
            continue
        try:
            with torch.no_grad():
                t = ctx.timer(fns[scope], [inputs[scope]], calls[scope], s.samples)
        except torch.cuda.OutOfMemoryError as e:
            failure = (rec.NOT_AVAILABLE, f"skipped: out of memory while timing ({_first(e)})")
        except Exception as e:
            failure = (rec.ERROR, f"timing raised {type(e).__name__}: {_first(e)}")
        if failure is not None:
            _release(torch.device(s.device))
            out.append(ctx.record(case, b, v, failure[0], correct=True, rel_err=err,
                                  tolerance=tol, detail=d, error=failure[1]))
            failure = None
            continue
        out.append(ctx.record(case, b, v, rec.OK, method=t.method, median_us=t.median_us,
                              p10_us=t.p10_us, p90_us=t.p90_us, samples_us=tuple(t.samples_us),
                              calls_per_sample=t.calls_per_sample, correct=True, rel_err=err,
                              tolerance=tol, detail=d))
    return out


def _first(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


def replace_layers(models: list[ModelConfig], layers: int | None) -> tuple[ModelConfig, ...]:
    """``--layers N``: the models with N layers (the default, None, keeps all)."""
    if not layers:
        return tuple(models)
    return tuple(dataclasses.replace(m, layers=min(layers, m.layers)) for m in models)
