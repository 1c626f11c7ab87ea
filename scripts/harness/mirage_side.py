"""The Mirage implementation of a case: pick the fastest correct candidate of its saved µGraphs.

``saved_mugraphs/<case>_b<b>.json`` holds the input program and the candidate µGraphs. On this GPU
each candidate is compiled (``mirage.runtime.compile``), checked against the fp32 reference on
fresh inputs (a wrong one is counted and dropped, however fast) and timed with the run's timer at
fewer samples; the fastest correct one is chosen. The choice is cached per physical GPU under
``.cache/mirage-choice/``, keyed by the file's digest, the card, the code of ``mirage/`` and the
torch/triton versions, so any change re-profiles; a cached choice is re-checked like any other
implementation before it is timed (``measure.measure``).

Each GPU has its own set (``saved_dir_for``): ``saved_mugraphs/<gpu>/`` where that folder holds
files (``saved_mugraphs/a100/``, searched under the A100's limits and cost model), else the flat
``saved_mugraphs/`` (the H100 set, also the H200's). A file is loaded with the run's target
(``target_for``: the H200 uses the H100's); a candidate whose tiles do not fit that target's
shared memory is listed in the record's detail (``unfit``) and logged, never compiled or timed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import torch

from baselines import NotAvailable
from mirage.ir import KernelGraph
from mirage.ir.serialize import atomic_write_text, load
from mirage.ir.target import H100, TARGETS, Target
from scripts.harness import records as rec
from scripts.harness.cases import Case
from scripts.harness.measure import Context, Rejected, check, seed_for
from scripts.harness.metadata import code_fingerprint

SAVED_ROOT = Path("saved_mugraphs")
# Cards without a target of their own, and the target whose limits they run under.
TARGET_OF_GPU = {"h200": "h100"}


def target_for(gpu: str | None) -> Target:
    """The target (per-block limits, cost model) of the card ``gpu`` ("a100", "h100", "h200";
    any case). A card with no target of its own (the H200, a card filed under its NVML slug)
    gets the H100's: the largest limits known, so no file is refused for them."""
    name = str(gpu or "").strip().lower()
    return TARGETS.get(TARGET_OF_GPU.get(name, name), H100)


def saved_dir_for(gpu: str | None, root: Path = SAVED_ROOT) -> Path:
    """The µGraph set a run on ``gpu`` uses: ``root/<gpu>/`` when that folder holds saved
    files (``saved_mugraphs/a100/``), else the flat ``root`` (the H100 set; the H200 uses it
    too). ``--saved`` on the command line overrides this."""
    root = Path(root)
    name = str(gpu or "").strip().lower()
    if name and name == _safe(name) and not name.startswith("."):
        own = root / name
        if own.is_dir() and any(own.glob("*_b*.json")):
            return own
    return root


def saved_path(saved_dir: Path, case: Case, b: int) -> Path:
    return Path(saved_dir) / f"{case.name}_b{b}.json"


def load_compiler() -> Callable:
    """``mirage.runtime.compile``, or ``NotAvailable`` saying why not."""
    try:
        from mirage.runtime import compile as compile_graph
    except Exception as e:
        raise NotAvailable(f"mirage.runtime not importable ({type(e).__name__}: {e})") from None
    return compile_graph


def _signature(types) -> list:
    return [(tuple(t.shape), t.dtype) for t in types]


def cache_key(path: Path, gpu_key: str, target: str = H100.name) -> dict:
    import triton

    return {"file_sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "gpu": gpu_key,
            "target": target,
            "mirage_code": code_fingerprint(paths=("mirage",)), "torch": torch.__version__,
            "triton": triton.__version__}


class ChoiceCache:
    """The chosen candidate per (GPU, case, b), valid only under the exact key it was made."""

    def __init__(self, root: Path, gpu_key: str):
        self.dir = Path(root) / "mirage-choice" / _safe(gpu_key or "unknown")

    def _path(self, case: Case, b: int) -> Path:
        return self.dir / f"{case.name}_b{b}.json"

    def get(self, case: Case, b: int, key: dict) -> dict | None:
        try:
            entry = json.loads(self._path(case, b).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return entry if entry.get("key") == key else None

    def put(self, case: Case, b: int, key: dict, entry: dict) -> None:
        atomic_write_text(self._path(case, b), json.dumps({**entry, "key": key}, indent=1))


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def prepare(ctx: Context, case: Case, b: int, sets: list, *, saved_dir: Path, cache_root: Path,
            compile_graph: Callable | None = None, target: Target | str = H100):
    """``(fn, detail)`` for the chosen candidate; raises ``NotAvailable`` or ``Rejected``.
    ``target``: the run's target; candidates that do not fit it are skipped and reported."""
    target = target_for(target.name if isinstance(target, Target) else target)
    path = saved_path(saved_dir, case, b)
    if not path.exists():
        raise NotAvailable(f"no saved µGraphs at {path}")
    compile_graph = compile_graph or load_compiler()
    # Loaded under the run's target: a candidate whose tiles exceed its shared memory is left
    # out by load() (mf.unfit), reported here and never compiled or timed.
    mf = load(path, target)
    if mf.unfit:
        ctx.log(f"  mirage: {len(mf.unfit)} of {len(mf.graphs) + len(mf.unfit)} candidates "
                f"do not fit the {target.name} target, skipped: "
                + "; ".join(f"#{i}: {reason}" for i, reason in mf.unfit))
    if not mf.graphs:
        raise Rejected(rec.ERROR, f"{path}: no candidate fits the {target.name} target",
                       {"file": str(path), "target": target.name, "candidates": 0,
                        "unfit": [[i, r] for i, r in mf.unfit]})
    shapes = case.shapes(b)
    if mf.program is not None and mf.program != case.program(b):
        raise Rejected(rec.ERROR, f"{path}: its input program is not the canonical {case.name} "
                                  f"program at b={b}")
    want = [(tuple(s), case.dtype) for s in shapes.values()]
    candidates = [(i, g) for i, g in enumerate(mf.graphs) if _signature(g.input_types) == want]
    detail = {"file": str(path), "target": target.name, "candidates": len(mf.graphs),
              "input_mismatch": len(mf.graphs) - len(candidates)}
    if mf.unfit:  # indices in the file; "index" below counts the candidates that fit only
        detail["unfit"] = [[i, reason] for i, reason in mf.unfit]
    if not candidates:
        raise Rejected(rec.ERROR, f"{path}: no candidate takes the inputs {want}", detail)

    cache = ChoiceCache(cache_root, ctx.gpu_key)
    key = cache_key(path, ctx.gpu_key, target.name)
    hit = cache.get(case, b, key)
    if hit is not None and hit.get("index", -1) < len(mf.graphs) \
            and mf.graphs[hit["index"]].digest == hit.get("digest"):
        ctx.log(f"  mirage: cached choice, candidate #{hit['index']} of {len(mf.graphs)}")
        chosen = {k: v for k, v in hit.items() if k != "key"}
        return compile_graph(mf.graphs[hit["index"]]), {**detail, **chosen, "cached": True}

    best = _profile(ctx, case, b, shapes, sets, candidates, compile_graph, detail)
    cache.put(case, b, key, {"index": best["index"], "digest": best["digest"],
                             "profile_median_us": best["profile_median_us"],
                             "profiled": best["profiled"]})
    fn = best.pop("fn")
    return fn, {**detail, **best, "cached": False}


def _profile(ctx: Context, case: Case, b: int, shapes: dict, sets: list,
             candidates: list[tuple[int, KernelGraph]], compile_graph: Callable,
             detail: dict) -> dict:
    """Compile, check and time each candidate; the fastest correct one, or ``Rejected``."""
    counts = {"wrong": 0, "failed": 0}
    profiled: dict[str, float] = {}
    best: dict | None = None
    for n, (i, graph) in enumerate(candidates, 1):
        ctx.log(f"  mirage: candidate {n}/{len(candidates)} (#{i})")
        try:
            fn = compile_graph(graph)
        except Exception as e:
            counts["failed"] += 1
            ctx.log(f"    compile failed: {type(e).__name__}: {e}")
            continue
        seeds = [seed_for(ctx.settings.seed, case.name, b, "mirage-candidate", i)]
        result = check(case, shapes, fn, seeds, ctx.settings.device)
        if not result.passed:
            counts["failed" if result.raised else "wrong"] += 1
            ctx.log(f"    rejected: {result.error}")
            continue
        try:
            with torch.no_grad():
                median = ctx.timer(fn, sets, samples=ctx.settings.profile_samples).median_us
        except Exception as e:
            counts["failed"] += 1
            ctx.log(f"    timing failed: {type(e).__name__}: {e}")
            continue
        profiled[str(i)] = median
        if best is None or median < best["profile_median_us"]:
            best = {"index": i, "digest": graph.digest, "profile_median_us": median, "fn": fn}
    detail = {**detail, **counts}
    if best is None:
        status = rec.WRONG if counts["wrong"] else rec.ERROR
        raise Rejected(status, f"no candidate passed: {counts['wrong']} wrong, "
                               f"{counts['failed']} failed, of {len(candidates)}", detail)
    return {**counts, **best, "profiled": profiled}
