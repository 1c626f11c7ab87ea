"""A cost model that ranks candidates without a GPU: DRAM traffic, per-SM streaming, FLOPs,
launches.

Per graph-defined kernel, three times bound the kernel and combine into a smooth maximum (the
bounds overlap only in part on the GPU):

* DRAM: every tensor the kernel reads is fetched once, every output written once (a tile
  several blocks re-read is served by L2);
* per SM: the blocks one SM runs (``ceil(blocks / SMs)``, sharing that SM) walk their loop; each
  iteration streams its input tiles at one SM's bandwidth and pays a fixed cost per step of its
  longest chain of dependent ops (address math, barriers, the loop's reductions). This is what
  makes few large blocks, and many tiny iterations, slow: a GEMV with 48 blocks of 128 columns
  cannot pull DRAM's bandwidth through 48 SMs;
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
from mirage.ir.check import LOOP, loop_stages
from mirage.ir.infer import is_accumulator
from mirage.ops import get

BANDWIDTH = {"h100": 3.0e12, "a100": 1.8e12}  # bytes/s, measured copy bandwidth class
SM_BANDWIDTH = {"h100": 40e9, "a100": 30e9}  # bytes/s one SM's blocks stream (fitted)
MATRIX_RATE = {"h100": 700e12, "a100": 280e12}  # fp16 FLOP/s
LAUNCH_S = 1.5e-6
# per step of a loop iteration's longest chain of dependent matmuls and reductions (each waits
# for the one before: tl.dot's pipeline, a cross-thread reduction), beyond streaming its tiles.
# Fitted: RMSNorm's one-step iterations (0.05 us, its K-tile sweep) and split-KV attention's two
# to three (H100, expected/search-vs-reference-h100/session3: QKNorm b=16 with 32-wide KV tiles,
# 64 iterations, ran 55.8 us; 16-wide, 128 iterations, 80.6 us)
STEP_S = 0.05e-6
RESIDENT_BLOCKS = 2  # blocks of one kernel an SM runs at once (shared memory, registers)
CHAIN_OPS = frozenset({"matmul", "reduce_sum", "rms_norm", "accum_sum_last", "accum_rms_last"})
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


def _chain_steps(block) -> int:
    """The longest chain of dependent matmuls and reductions in one loop iteration, from the
    input tiles to an accumulator. Elementwise ops between them stay in registers; each
    matmul or reduction waits for the one before, so an iteration costs at least the chain's
    latency, whatever its tiles."""
    stages, _ = loop_stages(block)
    steps = [0] * len(block.nodes)
    for i, n in enumerate(block.nodes):
        if n.op in ("input", "output") or not (stages[i] == LOOP or is_accumulator(n.op)):
            continue
        steps[i] = (n.op in CHAIN_OPS) + max((steps[a] for a in n.args), default=0)
    return max(1, max(steps))


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
    per_sm_blocks = math.ceil(blocks / target.num_sms)
    # Streaming is throughput: every block an SM runs adds its tiles. The chain's latency
    # overlaps between the blocks an SM holds at once (``RESIDENT_BLOCKS``).
    per_sm = block.forloop_range * (
        STEP_S * _chain_steps(block) * math.ceil(per_sm_blocks / RESIDENT_BLOCKS)
        + per_sm_blocks * tile_bytes / sm_bandwidth)
    math_s = flops / rate / min(1.0, blocks / target.num_sms)
    p = SOFTMAX_P
    return (dram**p + per_sm**p + math_s**p) ** (1 / p) + LAUNCH_S
