"""A cost model that ranks candidates without a GPU: DRAM traffic, per-SM streaming, FLOPs,
launches.

Per graph-defined kernel, three times bound the kernel and combine into a smooth maximum (the
bounds overlap only in part on the GPU):

* DRAM: every tensor the kernel reads is fetched once, every output written once (a tile
  several blocks re-read is served by L2);
* per SM: the blocks one SM runs (``ceil(blocks / SMs)``, sharing that SM) walk their loop; each
  iteration streams its input tiles at one SM's bandwidth and pays a fixed cost (address math,
  barriers, the loop's reductions). This is what makes few large blocks, and many tiny
  iterations, slow: a GEMV with 48 blocks of 128 columns cannot pull DRAM's bandwidth through
  48 SMs;
* math: FLOPs at the matrix rate of the SMs the grid occupies.

Each kernel also pays one launch. Pre-defined ops cost their operands and result once.
Calibrated on the H100 timings in ``expected/kernels-h100`` (RMSNorm tile sweeps at 16 and 32
rows, the references of every workload); ``scripts/rank_report.py`` shows how the model ranks a
search's candidates. The numbers are estimates for ranking, not predictions: the GPU profile
decides.
"""

from __future__ import annotations

import math

from mirage.ir import KernelGraph, Target
from mirage.ops import get

BANDWIDTH = {"h100": 3.0e12, "a100": 1.8e12}  # bytes/s, measured copy bandwidth class
SM_BANDWIDTH = {"h100": 40e9, "a100": 30e9}  # bytes/s one SM's blocks stream (fitted)
MATRIX_RATE = {"h100": 700e12, "a100": 280e12}  # fp16 FLOP/s
LAUNCH_S = 1.5e-6
ITERATION_S = 0.05e-6  # per loop iteration of a block, beyond streaming its tiles (fitted)
SOFTMAX_P = 4.0  # how sharply the bounds combine (infinity: the largest alone)


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


def _full_bytes(block, n) -> int:
    """Bytes of the kernel tensor behind block input ``n`` (its tile times the splits)."""
    splits = math.prod(s for s, d in zip(block.grid, n.imap, strict=True) if d is not None)
    return n.type.nbytes * splits * (block.forloop_range if n.fmap is not None else 1)


def estimate_block_seconds(block, target: Target) -> float:
    """The estimate of one graph-defined kernel (``block``: its block graph)."""
    bandwidth = BANDWIDTH.get(target.name, 2e12)
    sm_bandwidth = SM_BANDWIDTH.get(target.name, 40e9)
    rate = MATRIX_RATE.get(target.name, 300e12)
    blocks = block.num_blocks
    read: dict[int, int] = {}
    tile_bytes, written, flops = 0, 0, 0
    for n in block.nodes:
        if n.op == "input":
            read[n.source] = max(read.get(n.source, 0), _full_bytes(block, n))
            tile_bytes += n.type.nbytes
        elif n.op == "output":
            written += n.type.nbytes * blocks
        else:
            shapes = [block.nodes[a].type.shape for a in n.args]
            flops += get(n.op).flops(shapes, n.type.shape) * block.forloop_range * blocks
    dram = (sum(read.values()) + written) / bandwidth
    per_sm = math.ceil(blocks / target.num_sms) * block.forloop_range * (
        ITERATION_S + tile_bytes / sm_bandwidth)
    math_s = flops / rate / min(1.0, blocks / target.num_sms)
    p = SOFTMAX_P
    return (dram**p + per_sm**p + math_s**p) ** (1 / p) + LAUNCH_S
