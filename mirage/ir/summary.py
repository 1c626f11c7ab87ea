"""One-line human summaries of graphs, for the CLI and reports."""

from __future__ import annotations

from mirage.ir.check import shared_memory_bytes
from mirage.ir.graph import KernelGraph


def summarize(graph: KernelGraph) -> str:
    """e.g. ``2 inputs -> 1 output; 1 kernel: customized[grid 192x1x1, loop 16, 7 ops, 36 KB]``."""
    kernels = []
    for node in graph.nodes:
        if node.op == "input":
            continue
        if node.block is None:
            kernels.append(node.op)
        else:
            b = node.block
            grid = "x".join(str(g) for g in b.grid)
            kb = shared_memory_bytes(b) / 1024
            kernels.append(f"customized[grid {grid}, loop {b.forloop_range}, "
                           f"{len(b.nodes)} ops, {kb:.0f} KB]")
    n_in, n_out = len(graph.input_ids), len(graph.outputs)
    return (f"{n_in} input{'s' * (n_in != 1)} -> {n_out} output{'s' * (n_out != 1)}; "
            f"{len(kernels)} kernel{'s' * (len(kernels) != 1)}: {', '.join(kernels)}")
