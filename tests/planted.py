"""Planted wrong µGraphs: each looks plausible and must be rejected by the verifier.

``CATALOG`` maps a name to a builder returning ``(program, wrong_candidate)``. Shapes are small
so the whole catalog runs in seconds; where a bug needs two dims of equal size to type-check
(swapped operands, wrong axis), the shapes are chosen square.
"""

from __future__ import annotations

import dataclasses

from mirage.api import new_kernel_graph, new_threadblock_graph
from mirage.ir import KernelGraph
from mirage.workloads import PROGRAMS, REFERENCES
from mirage.workloads.programs import inputs_of, softmax_attention

N = None
ATTN = {"Q": (2, 16, 8), "K": (2, 64, 8), "V": (2, 64, 8)}
ATTN_SQUARE = {"Q": (2, 16, 8), "K": (2, 16, 8), "V": (2, 16, 8)}
RMS = {"X": (4, 64), "W": (64, 64)}
RMS_SQUARE = {"X": (64, 64), "W": (64, 32)}
MLP_SQUARE = {"X": (64, 64), "W1": (64, 64), "W2": (64, 64)}


def attention_graph(shapes, *, norm=("Q", "K"), scores="dot", kv_splits=2, row_splits=2,
                    tile_kv=16) -> KernelGraph:
    """Split-KV attention µGraph like the reference, with knobs for planting bugs.

    ``norm``: which of Q, K, V get rms_norm inside the kernel; ``scores``: ``dot`` (correct,
    q . k) or ``sum_before_exp`` (sum_d q_d times mean_d k_d: the upstream QKNorm bug).
    """
    g = new_kernel_graph()
    q, k, v = inputs_of(g, shapes, "fp16")
    heads, rows, _ = q.shape
    loop = k.dim(1) // kv_splits // tile_kv
    tb = new_threadblock_graph((heads, kv_splits, row_splits), loop)
    tq = tb.new_input(q, (0, N, 1), N)
    tk = tb.new_input(k, (0, 1, N), 1)
    tv = tb.new_input(v, (0, 1, N), 1)
    tq = tb.rms_norm(tq) if "Q" in norm else tq
    tk = tb.rms_norm(tk) if "K" in norm else tk
    tv = tb.rms_norm(tv) if "V" in norm else tv
    tkt = tb.transpose(tk, 1, 2)
    if scores == "dot":
        s = tb.matmul(tq, tkt)
    else:
        s = tb.mul(tb.reduce_sum(tq, 2), tb.reduce_mean(tkt, 1))
    e = tb.exp(s)
    tb.new_output(tb.forloop_accum(tb.matmul(e, tv)), (0, 2, 1))
    tb.new_output(tb.forloop_accum(e, "sum_last"), (0, 2, 1))
    o_parts, s_parts = g.customized([q, k, v], tb)
    tc = new_threadblock_graph((heads, 1, 1), kv_splits)
    to = tc.new_input(o_parts, (0, N, N), 2)
    ts = tc.new_input(s_parts, (0, N, N), 2)
    tc.new_output(tc.div(tc.forloop_accum(to), tc.forloop_accum(ts)), (0, N, N))
    (o,) = g.customized([o_parts, s_parts], tc)
    g.mark_output(o)
    return g.kernel_graph()


def upstream_qknorm_program(shapes) -> KernelGraph:
    """QKNorm as the upstream artifact wrote it: norms on Q and V (not K)."""
    g = new_kernel_graph()
    q, k, v = inputs_of(g, shapes, "fp16")
    g.mark_output(softmax_attention(g, g.rms_norm(q), k, g.rms_norm(v)))
    return g.kernel_graph()


def replace_block(graph: KernelGraph, kernel: int, **changes) -> KernelGraph:
    """``graph`` with kernel node ``kernel``'s block graph fields replaced (no re-derivation)."""
    nodes = list(graph.nodes)
    node = nodes[kernel]
    nodes[kernel] = dataclasses.replace(node, block=dataclasses.replace(node.block, **changes))
    return KernelGraph(tuple(nodes), graph.outputs)


def replace_block_node(graph: KernelGraph, kernel: int, index: int, **changes) -> KernelGraph:
    block = graph.nodes[kernel].block
    block_nodes = list(block.nodes)
    block_nodes[index] = dataclasses.replace(block_nodes[index], **changes)
    return replace_block(graph, kernel, nodes=tuple(block_nodes))


def _rmsnorm_variant(shapes, accumulator="rms", divide=True) -> KernelGraph:
    g = new_kernel_graph()
    x, w = inputs_of(g, shapes, "fp16")
    tb = new_threadblock_graph((w.dim(1) // 16, 1, 1), x.dim(1) // 16)
    tx = tb.new_input(x, (N, N, N), 1)
    tw = tb.new_input(w, (1, N, N), 0)
    acc = tb.forloop_accum(tb.matmul(tx, tw))
    norm = tb.forloop_accum(tx, accumulator)
    tb.new_output(tb.div(acc, norm) if divide else acc, (1, N, N))
    (o,) = g.customized([x, w], tb)
    g.mark_output(o)
    return g.kernel_graph()


def qknorm_sum_before_exp():
    return PROGRAMS["qknorm"](ATTN), attention_graph(ATTN, scores="sum_before_exp")


def wrong_reduction_axis():
    g = new_kernel_graph()
    x, w = inputs_of(g, RMS_SQUARE, "fp16")
    normed = g.transpose(g.rms_norm(g.transpose(x, 0, 1)), 0, 1)  # normalizes the batch dim
    g.mark_output(g.matmul(normed, w))
    return PROGRAMS["rmsnorm"](RMS_SQUARE), g.kernel_graph()


def wrong_imap():
    good = attention_graph(ATTN)
    customized = good.customized_ids[0]
    block = good.nodes[customized].block
    v_input = [i for i in block.input_ids if block.nodes[i].source == 2][0]
    # V's KV chunks follow the row-split axis (z) instead of the KV-split axis (y).
    return PROGRAMS["qknorm"](ATTN), replace_block_node(good, customized, v_input,
                                                        imap=(0, N, 1))


def softmax_denominator_wrong_axis():
    g = new_kernel_graph()
    q, k, v = inputs_of(g, ATTN_SQUARE, "fp16")
    e = g.exp(g.matmul(q, g.transpose(k, 1, 2)))
    g.mark_output(g.matmul(g.div(e, g.reduce_sum(e, 1)), v))  # sums over queries, not keys
    return PROGRAMS["gqa"](ATTN_SQUARE), g.kernel_graph()


def dropped_normalization():
    return PROGRAMS["rmsnorm"](RMS), _rmsnorm_variant(RMS, divide=False)


def swapped_matmul_operands():
    g = new_kernel_graph()
    x, w1, w2 = inputs_of(g, MLP_SQUARE, "fp16")
    g.mark_output(g.mul(g.silu(g.matmul(w1, x)), g.matmul(x, w2)))
    return PROGRAMS["gatedmlp"](MLP_SQUARE), g.kernel_graph()


def wrong_accumulator_kind():
    return PROGRAMS["rmsnorm"](RMS), _rmsnorm_variant(RMS, accumulator="sum_last")


def off_by_one_loop_split():
    """The loop runs one iteration short: the last chunk of the hidden dim is never read."""
    good = REFERENCES["rmsnorm"](RMS, tile_n=16, tile_k=16)
    customized = good.customized_ids[0]
    block = good.nodes[customized].block
    return PROGRAMS["rmsnorm"](RMS), replace_block(good, customized,
                                                   forloop_range=block.forloop_range - 1)


def norms_on_q_and_v():
    """The upstream QKNorm quirk: V normalized instead of K."""
    return PROGRAMS["qknorm"](ATTN), attention_graph(ATTN, norm=("Q", "V"))


CATALOG = {
    "qknorm_sum_before_exp": qknorm_sum_before_exp,
    "wrong_reduction_axis": wrong_reduction_axis,
    "wrong_imap": wrong_imap,
    "softmax_denominator_wrong_axis": softmax_denominator_wrong_axis,
    "dropped_normalization": dropped_normalization,
    "swapped_matmul_operands": swapped_matmul_operands,
    "wrong_accumulator_kind": wrong_accumulator_kind,
    "off_by_one_loop_split": off_by_one_loop_split,
    "norms_on_q_and_v": norms_on_q_and_v,
}
