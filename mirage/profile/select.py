"""Pick the fastest of several verified µGraphs on the GPU at hand."""

from __future__ import annotations

from dataclasses import dataclass

from mirage.errors import InputError
from mirage.ir import KernelGraph
from mirage.profile.timing import Timing, time_gpu


@dataclass
class Choice:
    """The winner: its compiled callable, its graph, every candidate's timing, and the
    candidates that could not run here (with why)."""

    compiled: object
    graph: KernelGraph
    timings: list[tuple[KernelGraph, Timing]]
    failed: list[tuple[KernelGraph, str]]

    def __call__(self, *args, **kwargs):
        return self.compiled(*args, **kwargs)


def _random_inputs(graph: KernelGraph, sets: int):
    import torch

    from mirage.runtime.compiled import torch_dtype

    return [tuple((torch.randn(t.shape, device="cuda") * 0.1).to(torch_dtype(t.dtype))
                  for t in graph.input_types) for _ in range(sets)]


def fastest(candidates: list[KernelGraph], *, program: KernelGraph | None = None,
            input_sets: int = 4) -> Choice:
    """Compile and time every candidate (CUDA graphs, events, rotated inputs); return the best.

    ``program``, the input program as written, is timed too when it is not among the
    candidates (``search`` already puts it last), so the choice is never slower than it. A
    candidate that fails to compile or run on this GPU (say, for lack of shared memory) is
    skipped and listed in ``Choice.failed``; with none left this raises ``RuntimeError``."""
    from mirage.runtime import compile as compile_graph

    candidates = list(candidates)
    if program is not None and all(g.digest != program.digest for g in candidates):
        candidates.append(program)
    if not candidates:
        raise InputError("candidates: no graph to time (pass the program as written)")
    timed, failed = [], []
    inputs = _random_inputs(candidates[0], input_sets)
    for graph in candidates:
        try:
            compiled = compile_graph(graph)
            timed.append((graph, compiled, time_gpu(compiled, inputs)))
        except Exception as e:  # noqa: BLE001 - a candidate this GPU cannot run just loses
            failed.append((graph, f"{type(e).__name__}: {e}"))
    if not timed:
        raise RuntimeError(f"none of {len(candidates)} candidates ran: {failed[0][1]}")
    graph, compiled, _ = min(timed, key=lambda x: x[2].median_us)
    return Choice(compiled, graph, [(g, t) for g, _, t in timed], failed)
