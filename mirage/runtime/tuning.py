"""Launch configs of generated kernels: a heuristic without a GPU, a timed choice with one.

The µGraph fixes each kernel's grid and tiles, so what is left free is how Triton runs a block:
``num_warps`` (threads per block) and ``num_stages`` (software-pipelining depth of the for-loop's
loads). ``candidates`` lists the configs worth timing; ``pick`` times them on the GPU with a cold
L2 (a buffer larger than L2 is rewritten before every launch, as ``triton.testing.do_bench``
does) and keeps the fastest median.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from mirage.codegen import KernelSpec
from mirage.ir.target import H100

L2_FLUSH_BYTES = 256 << 20


@dataclass(frozen=True)
class Config:
    num_warps: int
    num_stages: int

    def as_dict(self) -> dict:
        return asdict(self)


def fits(spec: KernelSpec, stages: int, smem_per_block: int = H100.smem_per_block) -> bool:
    """Does ``stages``-deep pipelining fit shared memory? Triton's pipeliner keeps
    ``stages - 1`` copies of the streamed tiles in flight (at least one; on the H100 a
    GatedMLP block of 136 KB tiles asked for 272 KB at 3 stages), next to the rest."""
    return max(1, stages - 1) * spec.stage_bytes + spec.smem_bytes <= smem_per_block


def heuristic(spec: KernelSpec, smem_per_block: int = H100.smem_per_block) -> Config:
    """A reasonable config without timing: ~1-4K tile elements per warp, 3 stages if looping
    (fewer where three do not fit shared memory)."""
    warps = 4
    if spec.max_tile_numel >= 8192:
        warps = 8
    elif spec.max_tile_numel <= 1024:
        warps = 2
    stages = 1 if spec.forloop_range == 1 else min(3, spec.forloop_range + 1)
    while stages > 1 and not fits(spec, stages, smem_per_block):
        stages -= 1
    return Config(warps, stages)


def candidates(spec: KernelSpec, smem_per_block: int = H100.smem_per_block) -> list[Config]:
    """Configs to time for ``spec``, the heuristic's first; none that overflows shared memory
    (the heuristic's always stays: one stage is the least a kernel can ask for)."""
    if spec.forloop_range == 1:
        grid = [Config(w, 1) for w in (1, 2, 4, 8)]
    else:
        # 2 warps too: every warp of a tl.dot re-reads the whole A tile from shared memory,
        # which is what limits GEMV-like kernels (M padded to 16, many N-slices per block).
        grid = [Config(w, s) for w in (4, 8) for s in (2, 3, 4)] + [Config(2, 3), Config(2, 4)]
        grid = [c for c in grid if fits(spec, c.num_stages, smem_per_block)]
    first = heuristic(spec, smem_per_block)
    return [first] + [c for c in grid if c != first]


def pick(launch: Callable[[Config], None], configs: list[Config], *, reps: int = 25
         ) -> tuple[Config, dict[str, float]]:
    """Time ``launch(config)`` for each config on the current CUDA device; the fastest wins.

    Returns the winner and the median µs of every config that ran (configs that fail to
    compile or launch, e.g. for lack of shared memory, are skipped).
    """
    import torch

    flush = torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.int32, device="cuda")
    results: dict[str, float] = {}
    best: tuple[float, Config] | None = None
    for cfg in configs:
        try:
            launch(cfg)  # compile and warm up
            torch.cuda.synchronize()
        except Exception:  # noqa: BLE001 - a config the GPU rejects is just not a candidate
            continue
        times = []
        for _ in range(reps):
            flush.zero_()
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            launch(cfg)
            end.record()
            times.append((start, end))
        torch.cuda.synchronize()
        us = sorted(s.elapsed_time(e) * 1000.0 for s, e in times)[reps // 2]
        results[f"w{cfg.num_warps}s{cfg.num_stages}"] = us
        if best is None or us < best[0]:
            best = (us, cfg)
    if best is None:
        raise RuntimeError("no launch config ran")
    return best[1], results


def precompile(launches: list[Callable[[], None]], workers: int = 16) -> None:
    """Compile many kernel variants at once (Triton's async-compile mode, where it exists).

    Each callable warms up one (kernel, config) pair; with ``AsyncCompileMode`` the compiles run
    in a thread pool and land in the JIT's cache. Without it (other Triton versions) this is a
    plain loop. Failures surface later, when ``pick`` launches the config.
    """
    try:
        from concurrent.futures import ThreadPoolExecutor

        from triton.runtime._async_compile import AsyncCompileMode
    except ImportError:
        AsyncCompileMode = None  # noqa: N806
    if AsyncCompileMode is None:
        for fn in launches:
            try:
                fn()
            except Exception:  # noqa: BLE001
                pass
        return
    with ThreadPoolExecutor(workers) as pool, AsyncCompileMode(pool, ignore_errors=True):
        for fn in launches:
            try:
                fn()
            except Exception:  # noqa: BLE001
                pass
