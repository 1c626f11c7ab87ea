"""A cost model that ranks candidates without a GPU: DRAM traffic, per-SM work, launches.

Per graph-defined kernel, two times bound the kernel and combine into a smooth maximum (the
bounds overlap only in part on the GPU):

* DRAM: every tensor the kernel reads is fetched once, every output written once (a tile
  several blocks re-read is served by L2);
* per SM: the blocks one SM runs (``ceil(blocks / SMs)``) walk their loop. One iteration of
  one block costs its *work*: a fixed cost (address math, barriers), streaming its input tiles
  at one SM's bandwidth, its matmuls at one SM's matrix rate and its other ops at one SM's
  element rate; a block whose live fp32 state (accumulators plus the largest in-loop
  intermediate) is large runs slower (register pressure: fewer warps per element, spills).
  An iteration also has a *latency*: its chain of dependent matmuls, exps and reductions (the
  first of them overlaps the next tiles' pipelined loads; each further one waits on the one
  before). Blocks resident on an SM at the same time (as many as the register file holds) hide
  each other's latency; a lone block pays it every iteration. Loop-invariant tiles are loaded
  once per block.

This is what makes few large blocks, and many tiny iterations, slow: a GEMV with 48 blocks of
128 columns cannot pull DRAM's bandwidth through 48 SMs, and split-KV attention with 128x128
score tiles (one block per SM) loses to 128x64 tiles two of which share an SM.

Each kernel also pays one launch. Pre-defined ops cost their operands and result once.
Calibrated on the H100: RMSNorm tile sweeps and the references of every workload
(``expected/kernels-h100``), and 162 split-KV attention candidates of the search and the four
attention references timed one by one (``expected/profile-tilings-h100``,
``scripts/profile_tilings.py``);
``scripts/rank_report.py`` shows how the model ranks a search's candidates. The numbers are
estimates for ranking, not predictions: the GPU profile decides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mirage.ir import KernelGraph, Target, infer
from mirage.ir.check import ACCUMULATOR_BYTES, DOT_MIN, LOOP, loop_stages
from mirage.ops import Prop, get

BANDWIDTH = {"h100": 3.0e12, "a100": 1.8e12}  # bytes/s, measured copy bandwidth class
SM_BANDWIDTH = {"h100": 40e9, "a100": 30e9}  # bytes/s one SM's blocks stream (fitted)
# fp16 FLOP/s of one SM as the attention fit saw it (H100). Not a peak: the fit gives matmuls
# less weight than the tensor cores' rate would. The A100's is scaled by the cards' per-SM fp16
# peaks (312/108 against 989/132 TFLOP/s); no A100 was at hand to fit it.
SM_MATRIX_RATE = {"h100": 14e12, "a100": 5.4e12}
SM_ELEMENT_RATE = 190e9  # elements/s one SM's other ops touch (fitted)
LAUNCH_S = 1.5e-6
ITERATION_S = 0.05e-6  # per loop iteration of a block, beyond its work (fitted)
CHAIN_S = 0.075e-6  # latency of each dependent matmul / exp / reduction after the first (fitted)
REGISTER_FILE_BYTES = 256 * 1024  # per SM, A100 and H100
REGISTERS_PER_LIVE_BYTE = 1.6  # a block's registers per byte of live fp32 state (fitted)
PRESSURE_BYTES = 43e3  # live fp32 state per block beyond which an iteration slows (fitted)
PRESSURE_SLOPE = 0.37  # how much slower per multiple of PRESSURE_BYTES beyond it (fitted)
SOFTMAX_P = 4.0  # how sharply the bounds combine (infinity: the largest alone)


def estimate_seconds(graph: KernelGraph, target: Target) -> float:
    bandwidth = BANDWIDTH.get(target.name, 2e12)
    rate = SM_MATRIX_RATE.get(target.name, 5e12) * target.num_sms
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


@dataclass
class IterationProfile:
    """What one loop iteration of one block does (``profile``)."""

    streamed_bytes: int = 0  # input tiles the loop walks
    invariant_bytes: int = 0  # input tiles loaded once per block
    flops: int = 0  # matmuls, dims padded for tl.dot
    elements: int = 0  # elements the other in-loop ops and the accumulators touch
    chain: int = 0  # in-loop matmuls, exps and reductions
    live_bytes: int = 0  # fp32 accumulators + the largest in-loop intermediate (fp32 too)


def profile(block) -> IterationProfile:
    """The per-iteration work of ``block``'s loop (post-loop ops run once and are cheap)."""
    stages, _ = loop_stages(block)
    p = IterationProfile()
    accumulators, largest = 0, 0
    for j, n in enumerate(block.nodes):
        if n.op == "output":
            continue
        if n.op == "input":
            if n.fmap is None:
                p.invariant_bytes += n.type.nbytes
            else:
                p.streamed_bytes += n.type.nbytes
            continue
        if infer.is_accumulator(n.op):
            accumulators += n.type.numel * ACCUMULATOR_BYTES
            p.elements += block.nodes[n.args[0]].type.numel
            continue
        rec = get(n.op)
        if stages[j] != LOOP or rec.has(Prop.VIEW):
            continue
        largest = max(largest, n.type.numel * ACCUMULATOR_BYTES)
        if n.op == "matmul":
            a, b = (block.nodes[i].type.shape for i in n.args)
            p.flops += 2 * math.prod(a[:-2]) * math.prod(max(DOT_MIN, d) for d in
                                                          (a[-2], a[-1], b[-1]))
            p.chain += 1
            continue
        p.elements += max(n.type.numel, sum(block.nodes[a].type.numel for a in n.args))
        if n.op == "exp" or not rec.has(Prop.ELEMENTWISE):
            p.chain += 1
    p.live_bytes = accumulators + largest
    return p


def estimate_block_seconds(block, target: Target) -> float:
    """The estimate of one graph-defined kernel (``block``: its block graph)."""
    bandwidth = BANDWIDTH.get(target.name, 2e12)
    sm_bandwidth = SM_BANDWIDTH.get(target.name, 40e9)
    sm_rate = SM_MATRIX_RATE.get(target.name, 5e12)
    read: dict[int, int] = {}
    written = 0
    for n in block.nodes:
        if n.op == "input":
            read[n.source] = max(read.get(n.source, 0), _full_bytes(block, n))
        elif n.op == "output":
            written += n.type.nbytes * block.num_blocks
    dram = (sum(read.values()) + written) / bandwidth

    p = profile(block)
    work = (ITERATION_S + p.streamed_bytes / sm_bandwidth + p.flops / sm_rate
            + p.elements / SM_ELEMENT_RATE)
    if p.live_bytes > PRESSURE_BYTES:
        work *= 1 + PRESSURE_SLOPE * (p.live_bytes / PRESSURE_BYTES - 1)
    per_sm_blocks = math.ceil(block.num_blocks / target.num_sms)
    holds = REGISTER_FILE_BYTES // max(1, round(REGISTERS_PER_LIVE_BYTE * p.live_bytes))
    resident = max(1, min(per_sm_blocks, holds))
    # ``resident`` blocks finish one iteration each per max(their work, one's latency).
    latency = work + max(0, p.chain - 1) * CHAIN_S
    iteration = max(resident * work, latency)
    rounds = math.ceil(per_sm_blocks / resident)
    per_sm = rounds * (block.forloop_range * iteration + p.invariant_bytes / sm_bandwidth)
    q = SOFTMAX_P
    return (dram**q + per_sm**q) ** (1 / q) + LAUNCH_S
