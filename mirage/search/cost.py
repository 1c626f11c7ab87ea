"""A cost model that ranks candidates without a GPU: bytes moved, FLOPs, launches, occupancy.

Per graph-defined kernel: every block reads its input tiles once per loop iteration (so data
re-read by several blocks counts every time) and writes its output tiles once; time is the larger
of bytes over bandwidth and FLOPs over the matrix rate, scaled up when the grid has fewer blocks
than the GPU has SMs, at least the loop's iterations times a per-iteration latency, plus one
launch. Pre-defined ops cost their operands and result once.
The numbers are estimates for ranking, not predictions: the GPU profile decides.
"""

from __future__ import annotations

from mirage.ir import KernelGraph, Target
from mirage.ops import get

BANDWIDTH = {"h100": 3.0e12, "a100": 1.8e12}  # bytes/s, measured copy bandwidth class
MATRIX_RATE = {"h100": 700e12, "a100": 280e12}  # fp16 FLOP/s
LAUNCH_S = 2.5e-6
ITERATION_S = 0.2e-6  # one loop iteration's load latency, pipelined (H100 RMS kernels: ~0.1-0.5)


def estimate_seconds(graph: KernelGraph, target: Target) -> float:
    bandwidth = BANDWIDTH.get(target.name, 2e12)
    rate = MATRIX_RATE.get(target.name, 300e12)
    total = 0.0
    for node in graph.nodes:
        if node.op == "input":
            continue
        if node.block is None:
            moved = sum(graph.type_of(r).nbytes for r in node.args) + node.outputs[0].nbytes
            flops = get(node.op).flops([graph.type_of(r).shape for r in node.args],
                                       node.outputs[0].shape)
            total += max(moved / bandwidth, flops / rate) + LAUNCH_S
            continue
        total += estimate_block_seconds(node.block, target)
    return total


def estimate_block_seconds(block, target: Target) -> float:
    """The estimate of one graph-defined kernel (``block``: its block graph)."""
    bandwidth = BANDWIDTH.get(target.name, 2e12)
    rate = MATRIX_RATE.get(target.name, 300e12)
    blocks = block.num_blocks
    moved, flops = 0, 0
    for n in block.nodes:
        if n.op == "input":
            moved += n.type.nbytes * block.forloop_range * blocks
        elif n.op == "output":
            moved += n.type.nbytes * blocks
        else:
            shapes = [block.nodes[a].type.shape for a in n.args]
            flops += get(n.op).flops(shapes, n.type.shape) * block.forloop_range * blocks
    occupancy = min(1.0, blocks / target.num_sms)
    # a block's iterations run one after another: a long loop of small tiles is latency
    latency = block.forloop_range * ITERATION_S
    return max(max(moved / bandwidth, flops / rate) / occupancy, latency) + LAUNCH_S
