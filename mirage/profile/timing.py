"""The one GPU timing method of the project: CUDA-graph replay, CUDA events, rotated inputs.

One replay of a CUDA graph costs ~20 µs of launch overhead on the H100, so a graph captures many
calls (``calls_per_graph``) and the per-call time is the replay time divided by that count. Calls
inside a graph cycle through ``input_sets`` so that memory-bound code is not timed from L2: the
caller supplies enough sets for their total size to exceed the L2 (50 MB on the H100).

Every number carries ``METHOD`` (STYLE point 11). torch is imported inside the functions, so this
module imports on a CPU-only machine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

METHOD = "cudagraph-events-rotated"  # stored with every number


@dataclass(frozen=True)
class Timing:
    """One timed implementation: per-call microseconds over ``len(samples_us)`` replays."""

    method: str
    median_us: float
    p10_us: float
    p90_us: float
    samples_us: tuple[float, ...]
    calls_per_sample: int


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of an already sorted sequence."""
    if not sorted_values:
        raise ValueError("no samples")
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(samples_us: Sequence[float], calls_per_sample: int, method: str = METHOD) -> Timing:
    """A ``Timing`` from per-call sample times (µs)."""
    ordered = sorted(samples_us)
    return Timing(
        method=method,
        median_us=_quantile(ordered, 0.5),
        p10_us=_quantile(ordered, 0.1),
        p90_us=_quantile(ordered, 0.9),
        samples_us=tuple(float(s) for s in samples_us),
        calls_per_sample=calls_per_sample,
    )


def time_gpu(fn: Callable, input_sets: Sequence[tuple], *, calls_per_graph: int = 128,
             samples: int = 100, warmup: int = 3) -> Timing:
    """fn(*inputs) on the current CUDA device; input_sets: list of tuples of tensors, rotated call
    by call so the working set exceeds L2 (caller supplies enough sets). Captures
    `calls_per_graph` calls in one CUDA graph, warm-up replays, then times each replay with CUDA
    events; per-call time = replay / calls."""
    import torch

    if not input_sets:
        raise ValueError("time_gpu needs at least one input set")
    if calls_per_graph < 1 or samples < 1:
        raise ValueError("calls_per_graph and samples must be positive")
    # Eager warm-up on a side stream (what torch.cuda.graph capture expects): compiles JIT
    # kernels, creates library handles and lets the caching allocator settle.
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for inputs in input_sets[: min(len(input_sets), 3)]:
            fn(*inputs)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()

    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for call in range(calls_per_graph):
            fn(*input_sets[call % len(input_sets)])
    for _ in range(warmup):
        graph.replay()
    torch.cuda.synchronize()

    starts = [torch.cuda.Event(enable_timing=True) for _ in range(samples)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(samples)]
    for start, end in zip(starts, ends, strict=True):
        start.record()
        graph.replay()
        end.record()
    torch.cuda.synchronize()
    per_call = [s.elapsed_time(e) * 1000.0 / calls_per_graph for s, e in zip(starts, ends,
                                                                             strict=True)]
    del graph
    return summarize(per_call, calls_per_graph)


def copy_bandwidth(nbytes: int = 1 << 30, *, samples: int = 20) -> float:
    """Measured device-to-device copy bandwidth in bytes/s, counting bytes read plus written.

    Copies a ``nbytes`` buffer (far larger than L2) with ``Tensor.copy_`` and takes the median of
    ``samples`` event-timed copies. The memory floor of a kernel is its bytes moved over this.
    """
    import torch

    src = torch.empty(nbytes // 2, dtype=torch.float16, device="cuda").normal_()
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    torch.cuda.synchronize()
    times = []
    for _ in range(samples):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000.0)
    seconds = sorted(times)[len(times) // 2]
    return 2 * src.numel() * src.element_size() / seconds
