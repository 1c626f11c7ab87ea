"""Hand-written reference µGraphs for the six workloads, in the fused forms the paper describes.

Each builder takes the same shape dict as the input program and derives its grid and loop from
the shapes (clipped for small test shapes), so the same code serves the canonical sizes and the
reduced ones the interpreter tests use. The search must find graphs at least as good as these.
"""

from __future__ import annotations

from collections.abc import Callable

from mirage.api import new_kernel_graph, new_threadblock_graph
from mirage.ir import KernelGraph
from mirage.workloads.programs import SHAPES, inputs_of

N = None  # "not mapped", for readable maps


def _split(extent: int, tile: int) -> int:
    """How many tiles of ``min(tile, extent)`` cover ``extent``."""
    tile = min(tile, extent)
    if extent % tile:
        raise ValueError(f"tile {tile} does not divide {extent}")
    return extent // tile


def rmsnorm(shapes: dict, dtype: str = "fp16", tile_n: int = 64, tile_k: int = 256,
            rms_first: bool | None = None):
    """rms_norm(X) W with the division moved after the matmul.

    One kernel: blocks split W's columns; the loop walks the hidden dim, accumulating X W and the
    sum of squares of X together; after the loop the product is divided by the RMS. With
    ``rms_first`` (the default above 16 rows) a small first kernel computes the RMS of each row
    once, and the matmul kernel only divides by it (every block of the fused form recomputes it
    from X).
    """
    g = new_kernel_graph()
    x, w = inputs_of(g, shapes, dtype)
    if rms_first is None:  # H100, expected/kernels-h100.md: fused up to 16 rows; at 32 rows
        rms_first = x.dim(0) > 16  # the fused kernel holds DRAM at 53%, the split form 77%
    loop = _split(x.dim(1), tile_k)
    if rms_first:
        tr = new_threadblock_graph((x.dim(0), 1, 1), loop)  # one block per row
        tr.new_output(tr.forloop_accum(tr.new_input(x, (0, N, N), 1), "rms"), (0, N, N))
        (r,) = g.customized([x], tr)
    tb = new_threadblock_graph((_split(w.dim(1), tile_n), 1, 1), loop)
    tx = tb.new_input(x, (N, N, N), 1)
    tw = tb.new_input(w, (1, N, N), 0)
    if rms_first:
        # Block inputs are in-loop values, so the division by the RMS happens in the loop (on
        # each partial product; by linearity the sum is the same).
        tr = tb.new_input(r, (N, N, N), N)
        tb.new_output(tb.forloop_accum(tb.div(tb.matmul(tx, tw), tr)), (1, N, N))
        (o,) = g.customized([x, w, r], tb)
    else:
        acc = tb.forloop_accum(tb.matmul(tx, tw))
        tb.new_output(tb.div(acc, tb.forloop_accum(tx, "rms")), (1, N, N))
        (o,) = g.customized([x, w], tb)
    g.mark_output(o)
    return g.kernel_graph()


def gatedmlp(shapes: dict, dtype: str = "fp16", tile_n: int = 32, tile_k: int = 128):
    """silu(X W1) * (X W2): both matmuls in one loop, SiLU and Mul after it."""
    g = new_kernel_graph()
    x, w1, w2 = inputs_of(g, shapes, dtype)
    tb = new_threadblock_graph((_split(w1.dim(1), tile_n), 1, 1), _split(x.dim(1), tile_k))
    tx = tb.new_input(x, (N, N, N), 1)
    t1 = tb.new_input(w1, (1, N, N), 0)
    t2 = tb.new_input(w2, (1, N, N), 0)
    a1 = tb.forloop_accum(tb.matmul(tx, t1))
    a2 = tb.forloop_accum(tb.matmul(tx, t2))
    tb.new_output(tb.mul(tb.silu(a1), a2), (1, N, N))
    (o,) = g.customized([x, w1, w2], tb)
    g.mark_output(o)
    return g.kernel_graph()


def lora(shapes: dict, dtype: str = "fp16", tile_n: int = 32, tile_k: int = 128,
         normalize: bool = False):
    """X W + (X A) B in one kernel.

    The loop walks the shared dim k of X, W and A; by linearity sum_k (X_k A_k) B equals
    (X A) B, so each iteration adds X_k W_k + (X_k A_k) B and one accumulator holds the result.
    With ``normalize`` it computes rms_norm(X) W + (rms_norm(X) A) B: the sum of squares of X is
    accumulated in the same loop and the division by the RMS follows it.
    """
    g = new_kernel_graph()
    x, w, a, b = inputs_of(g, shapes, dtype)
    tb = new_threadblock_graph((_split(w.dim(1), tile_n), 1, 1), _split(x.dim(1), tile_k))
    tx = tb.new_input(x, (N, N, N), 1)
    tw = tb.new_input(w, (1, N, N), 0)
    ta = tb.new_input(a, (N, N, N), 0)
    tbb = tb.new_input(b, (1, N, N), N)
    low_rank = tb.matmul(tb.matmul(tx, ta), tbb)
    acc = tb.forloop_accum(tb.add(tb.matmul(tx, tw), low_rank))
    if normalize:  # rms_norm(X) first: the division by the RMS distributes over the sum
        acc = tb.div(acc, tb.forloop_accum(tx, "rms"))
    tb.new_output(acc, (1, N, N))
    (o,) = g.customized([x, w, a, b], tb)
    g.mark_output(o)
    return g.kernel_graph()


def _attention(shapes: dict, dtype: str, normalize: bool, kv_splits: int, row_splits: int,
               tile_kv: int, combine_rows: int) -> KernelGraph:
    """Split-KV attention: kernel 1 computes, per KV chunk, the unnormalised output and the
    partial row sums of exp; kernel 2 sums the chunks and divides. With ``normalize`` the RMS
    norms of Q and K run inside kernel 1 (QKNorm)."""
    g = new_kernel_graph()
    q, k, v = inputs_of(g, shapes, dtype)
    heads, rows, _ = q.shape
    kv_len = k.dim(1)
    kv_splits = min(kv_splits, kv_len)
    row_splits = min(row_splits, rows)
    loop = _split(kv_len // kv_splits, tile_kv)
    tb = new_threadblock_graph((heads, kv_splits, row_splits), loop)
    tq = tb.new_input(q, (0, N, 1), N)
    tv = tb.new_input(v, (0, 1, N), 1)
    if normalize:
        tq = tb.rms_norm(tq)
        tk = tb.new_input(k, (0, 1, N), 1)
        tkt = tb.transpose(tb.rms_norm(tk), 1, 2)
        operands = [q, k, v]
    else:
        kt = g.transpose(k, 1, 2)
        tkt = tb.new_input(kt, (0, 2, N), 2)
        operands = [q, kt, v]
    e = tb.exp(tb.matmul(tq, tkt))
    out_part = tb.forloop_accum(tb.matmul(e, tv))
    sum_part = tb.forloop_accum(e, "sum_last")
    tb.new_output(out_part, (0, 2, 1))
    tb.new_output(sum_part, (0, 2, 1))
    o_parts, s_parts = g.customized(operands, tb)

    combine_rows = min(combine_rows, rows)
    tc = new_threadblock_graph((heads, combine_rows, 1), kv_splits)
    to = tc.new_input(o_parts, (0, 1, N), 2)
    ts = tc.new_input(s_parts, (0, 1, N), 2)
    total_out = tc.forloop_accum(to)
    total_sum = tc.forloop_accum(ts)
    tc.new_output(tc.div(total_out, total_sum), (0, 1, N))
    (o,) = g.customized([o_parts, s_parts], tc)
    g.mark_output(o)
    return g.kernel_graph()


def _kv_splits(shapes: dict) -> int:
    """About 128 (heads x KV chunks) blocks, 4 to 16 chunks: enough to occupy the GPU, no more
    (more chunks only add partial-result traffic). H100, expected/kernels-h100.md: 16 chunks
    best at 2 heads, 8 at 16 heads (18.8 us against 24.4 with 16), 4 at 32 heads."""
    return max(4, min(16, 128 // shapes["Q"][0]))


def gqa(shapes: dict, dtype: str = "fp16", kv_splits: int | None = None, row_splits: int = 2,
        tile_kv: int = 64, combine_rows: int = 32) -> KernelGraph:
    kv_splits = kv_splits or _kv_splits(shapes)
    return _attention(shapes, dtype, False, kv_splits, row_splits, tile_kv, combine_rows)


def qknorm(shapes: dict, dtype: str = "fp16", kv_splits: int | None = None, row_splits: int = 2,
           tile_kv: int = 64, combine_rows: int = 32) -> KernelGraph:
    kv_splits = kv_splits or _kv_splits(shapes)
    return _attention(shapes, dtype, True, kv_splits, row_splits, tile_kv, combine_rows)


def ntrans(shapes: dict, dtype: str = "fp16") -> KernelGraph:
    """rms_norm(X + alpha * (rms_norm(H) - X)) in one kernel, one block per row."""
    g = new_kernel_graph()
    h, x, alpha = inputs_of(g, shapes, dtype)
    tb = new_threadblock_graph((h.dim(0), 1, 1), 1)
    th, tx, ta = (tb.new_input(t, (0, N, N), N) for t in (h, x, alpha))
    y = tb.add(tx, tb.mul(ta, tb.sub(tb.rms_norm(th), tx)))
    # One iteration: the accumulator only marks the loop boundary (the whole row is one tile).
    tb.new_output(tb.forloop_accum(tb.rms_norm(y)), (0, N, N))
    (o,) = g.customized([h, x, alpha], tb)
    g.mark_output(o)
    return g.kernel_graph()


REFERENCES: dict[str, Callable[..., KernelGraph]] = {
    "gqa": gqa,
    "qknorm": qknorm,
    "rmsnorm": rmsnorm,
    "lora": lora,
    "gatedmlp": gatedmlp,
    "ntrans": ntrans,
}


def reference(name: str, b: int, dtype: str = "fp16") -> KernelGraph:
    """The hand-written µGraph of workload ``name`` at its canonical shapes for batch ``b``."""
    return REFERENCES[name](SHAPES[name](b), dtype)
