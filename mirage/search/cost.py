"""A cost model that ranks candidates without a GPU: DRAM traffic, per-SM streaming, FLOPs,
launches.

Per graph-defined kernel, three times bound the kernel and combine into a smooth maximum (the
bounds overlap only in part on the GPU):

* DRAM: every tensor the kernel reads is fetched once, every output written once (a tile
  several blocks re-read is served by L2);
* per SM: the blocks one SM runs (``ceil(blocks / SMs)``, sharing that SM) load their
  loop-invariant tiles once (the generated code hoists them) and walk their loop; each
  iteration streams its input tiles at one SM's bandwidth and pays a fixed cost (address math,
  barriers, the loop's reductions). This is what makes few large blocks, and many tiny
  iterations, slow: a GEMV with 48 blocks of 128 columns cannot pull DRAM's bandwidth through
  48 SMs;
* math: FLOPs at the matrix rate of the SMs the grid occupies.

The per-SM time grows with the tiles a block computes in its loop beyond its registers
(``REGISTER_BYTES``): they spill.

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
ITERATION_S = 0.05e-6  # per loop iteration of a block, beyond streaming its tiles (fitted)
# Registers of one block (4 warps x 32 threads x 255 x 4 bytes): tiles beyond them spill to
# local memory every iteration. A split-KV attention block with a 128 x 256 score tile (its exp,
# its P V product and the accumulators: 320 KB) ran 25 us at GQA b=8 where 64-wide KV tiles
# (128 KB) ran 18.8 us on the H100.
REGISTER_BYTES = 128 * 1024
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


def _live_bytes(block) -> int:
    """fp32 bytes of the tiles a block computes inside its loop, accumulators included: what
    the generated code keeps in registers while it walks the loop."""
    stages, _ = loop_stages(block)
    return sum(math.prod(n.type.shape) * 4 for n, stage in zip(block.nodes, stages, strict=True)
               if n.op not in ("input", "output") and (stage == LOOP or is_accumulator(n.op)))


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
    streamed, invariant, written, flops = 0, 0, 0, 0
    for n in block.nodes:
        if n.op == "input":
            read[n.source] = max(read.get(n.source, 0), _full_bytes(block, n))
            if n.fmap is None and block.forloop_range > 1:
                invariant += n.type.nbytes  # hoisted before the loop by the generated code
            else:
                streamed += n.type.nbytes
        elif n.op == "output":
            written += n.type.nbytes * blocks
        else:
            shapes = [block.nodes[a].type.shape for a in n.args]
            flops += get(n.op).flops(shapes, n.type.shape) * block.forloop_range * blocks
    dram = (sum(read.values()) + written) / bandwidth
    per_sm = math.ceil(blocks / target.num_sms) * (
        block.forloop_range * (ITERATION_S + streamed / sm_bandwidth) + invariant / sm_bandwidth)
    per_sm *= max(1.0, _live_bytes(block) / REGISTER_BYTES)
    math_s = flops / rate / min(1.0, blocks / target.num_sms)
    p = SOFTMAX_P
    return (dram**p + per_sm**p + math_s**p) ** (1 / p) + LAUNCH_S
