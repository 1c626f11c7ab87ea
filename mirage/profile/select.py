"""Pick the fastest of several verified µGraphs on the GPU at hand."""

from __future__ import annotations

from dataclasses import dataclass

from mirage.ir import KernelGraph
from mirage.profile.timing import Timing, time_gpu


@dataclass
class Choice:
    """The winner: its compiled callable, its graph, and every candidate's timing."""

    compiled: object
    graph: KernelGraph
    timings: list[tuple[KernelGraph, Timing]]

    def __call__(self, *args, **kwargs):
        return self.compiled(*args, **kwargs)


def _random_inputs(graph: KernelGraph, sets: int):
    import torch

    from mirage.runtime.compiled import torch_dtype

    return [tuple((torch.randn(t.shape, device="cuda") * 0.1).to(torch_dtype(t.dtype))
                  for t in graph.input_types) for _ in range(sets)]


def fastest(candidates: list[KernelGraph], *, input_sets: int = 4) -> Choice:
    """Compile and time every candidate (CUDA graphs, events, rotated inputs); return the best."""
    from mirage.runtime import compile as compile_graph

    timed = []
    inputs = _random_inputs(candidates[0], input_sets)
    for graph in candidates:
        compiled = compile_graph(graph)
        timed.append((graph, compiled, time_gpu(compiled, inputs)))
    graph, compiled, _ = min(timed, key=lambda x: x[2].median_us)
    return Choice(compiled, graph, [(g, t) for g, _, t in timed])
