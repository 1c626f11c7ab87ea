"""A cost model that ranks candidates without a GPU: bytes moved, FLOPs, launches, occupancy.

Per graph-defined kernel: every block reads its input tiles once per loop iteration (so data
re-read by several blocks counts every time) and writes its output tiles once; time is the larger
of bytes over bandwidth and FLOPs over the matrix rate, scaled up when the grid has fewer blocks
than the GPU has SMs, by a fixed cost per loop iteration and when shared memory cannot hold
enough iterations' tiles to pipeline them, plus one launch. Pre-defined ops cost their
operands and result once.
The numbers are estimates for ranking, not predictions: the GPU profile decides.
"""

from __future__ import annotations

from mirage.ir import KernelGraph, Target
from mirage.ops import get

BANDWIDTH = {"h100": 3.0e12, "a100": 1.8e12}  # bytes/s, measured copy bandwidth class
MATRIX_RATE = {"h100": 700e12, "a100": 280e12}  # fp16 FLOP/s
LAUNCH_S = 2.5e-6
# per loop iteration, beyond streaming its tiles (H100, RMSNorm b = 8: K tiles of 256 ran 21.9
# us, of 128 23.2)
ITERATION_S = 0.1e-6


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
    return (max(moved / bandwidth, flops / rate) / occupancy * _loop_tile_factor(block, target)
            + LAUNCH_S)


def _loop_tile_factor(block, target: Target) -> float:
    """Penalties of a loop's tiling. Each iteration costs ``ITERATION_S`` on top of streaming
    its input tiles (at a full GPU's per-SM share of the bandwidth), so small tiles pay more;
    and when shared memory holds only two (one) iterations' tiles the loads stop overlapping
    the math: 20% (50%). A loop of one iteration streams nothing and pays neither."""
    if block.forloop_range == 1:
        return 1.0
    tile_bytes = sum(n.type.nbytes for n in block.nodes if n.op == "input")
    per_sm = BANDWIDTH.get(target.name, 2e12) / target.num_sms
    factor = 1.0 + ITERATION_S / max(tile_bytes / per_sm, 1e-9)
    stages = target.smem_per_block // max(1, tile_bytes)
    return factor * (1.5 if stages < 2 else 1.2 if stages == 2 else 1.0)
