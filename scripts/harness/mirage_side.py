"""The Mirage implementation of a case: pick the fastest correct candidate of its saved µGraphs.

``saved_mugraphs/<case>_b<b>.json`` holds the input program and the candidate µGraphs. On this GPU
each candidate is compiled (``mirage.runtime.compile``), checked against the fp32 reference on
fresh inputs (a wrong one is counted and dropped, however fast) and timed with the run's timer at
fewer samples; the fastest correct one is chosen. The choice is cached per physical GPU under
``.cache/mirage-choice/``, keyed by the file's digest, the card, the code of ``mirage/`` and the
torch/triton versions, so any change re-profiles; a cached choice is re-checked like any other
implementation before it is timed (``measure.measure``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import torch

from baselines import NotAvailable
from mirage.ir import H100, KernelGraph
from mirage.ir.serialize import atomic_write_text, load
from scripts.harness import records as rec
from scripts.harness.cases import Case
from scripts.harness.measure import Context, Rejected, check, seed_for
from scripts.harness.metadata import code_fingerprint


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


def cache_key(path: Path, gpu_key: str) -> dict:
    import triton

    return {"file_sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "gpu": gpu_key,
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
            compile_graph: Callable | None = None):
    """``(fn, detail)`` for the chosen candidate; raises ``NotAvailable`` or ``Rejected``."""
    path = saved_path(saved_dir, case, b)
    if not path.exists():
        raise NotAvailable(f"no saved µGraphs at {path}")
    compile_graph = compile_graph or load_compiler()
    # Validate with the largest per-block limit we know (H100): a file may hold candidates for
    # either card, and one that does not fit this GPU fails its own build, not the whole file.
    mf = load(path, H100)
    shapes = case.shapes(b)
    if mf.program is not None and mf.program != case.program(b):
        raise Rejected(rec.ERROR, f"{path}: its input program is not the canonical {case.name} "
                                  f"program at b={b}")
    want = [(tuple(s), case.dtype) for s in shapes.values()]
    candidates = [(i, g) for i, g in enumerate(mf.graphs) if _signature(g.input_types) == want]
    detail = {"file": str(path), "candidates": len(mf.graphs),
              "input_mismatch": len(mf.graphs) - len(candidates)}
    if not candidates:
        raise Rejected(rec.ERROR, f"{path}: no candidate takes the inputs {want}", detail)

    cache = ChoiceCache(cache_root, ctx.gpu_key)
    key = cache_key(path, ctx.gpu_key)
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
