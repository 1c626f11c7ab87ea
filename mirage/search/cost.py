"""A cost model that ranks candidates without a GPU: bytes moved, FLOPs, launches, occupancy.

Per graph-defined kernel: every block reads its input tiles once per loop iteration (so data
re-read by several blocks counts every time) and writes its output tiles once; time is the larger
of bytes over bandwidth and FLOPs over the matrix rate, scaled up when the grid has fewer blocks
than the GPU has SMs and when the loop's tiles are too small, too large or too many for shared
memory to pipeline, plus one launch. Pre-defined ops cost their operands and result once.
The numbers are estimates for ranking, not predictions: the GPU profile decides.
"""

from __future__ import annotations

import math

from mirage.ir import KernelGraph, Target
from mirage.ops import get

BANDWIDTH = {"h100": 3.0e12, "a100": 1.8e12}  # bytes/s, measured copy bandwidth class
MATRIX_RATE = {"h100": 700e12, "a100": 280e12}  # fp16 FLOP/s
LAUNCH_S = 2.5e-6
# H100: RMSNorm b = 8 ran K tiles of 256 in 21.9 us, 128 in 23.2, 512 in 29.8 (tile_n 32);
# attention liked 64-key tiles
MIN_LOOP_TILE, MAX_LOOP_TILE = 64, 256


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
    """Penalties of a loop's tiling: 10% per factor of two that the tile along the walked dim
    lies outside [MIN_LOOP_TILE, MAX_LOOP_TILE] elements (small tiles pay per-iteration
    overhead, large ones registers), and 20% (50%) when shared memory holds only two (one)
    iterations' input tiles (the loads stop overlapping the math). A loop of one iteration
    streams nothing and pays neither."""
    if block.forloop_range == 1:
        return 1.0
    inputs = [n for n in block.nodes if n.op == "input"]
    tile = max(n.type.shape[n.fmap] for n in inputs if n.fmap is not None)
    factor = 1.0 + 0.1 * (max(0.0, math.log2(tile / MAX_LOOP_TILE))
                          + max(0.0, math.log2(MIN_LOOP_TILE / tile)))
    stages = target.smem_per_block // max(1, sum(n.type.nbytes for n in inputs))
    return factor * (1.5 if stages < 2 else 1.2 if stages == 2 else 1.0)
