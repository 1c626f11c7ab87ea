"""The fusable subprograms of the end-to-end decoders (Figure 11): input programs and µGraphs.

Each *kind* is a row: an input-program builder and a µGraph builder that both take a dict of
input shapes (any dims; the model configs in ``models/`` supply the real ones) and a dtype. The
µGraph builders derive grids, tiles and loop ranges from the shapes and the target's SM count,
as ``mirage.workloads.references`` does, and reuse its builders where the subprogram is one of
the paper's six workloads. ``build(kind, shapes)`` returns ``(program, [µGraph, ...])``.

Kinds (X is the hidden state of ``b`` decode tokens, one row per sequence):

* ``norm_matmul``: rms_norm(X) W — RMSNorm + QKV projection, and the final norm + LM head;
* ``norm_lora``: rms_norm(X) W + (rms_norm(X) A) B — the same with a LoRA adapter;
* ``lora``: X W + (X A) B — a projection with a LoRA adapter (the paper's LoRA);
* ``norm_gated_mlp``: silu(rms_norm(X) W1) * (rms_norm(X) W2) — RMSNorm + gated MLP;
* ``gated_mlp``: silu(X W1) * (X W2) — nGPT's MLP (no norm in front);
* ``attention``: softmax(Q K^T) V over a KV cache, Q (b*kv_heads, group, d), K and V
  (b*kv_heads, kv_len, d): grouped-query decode, each KV head serving its group of query heads
  (one token per sequence); the 1/sqrt(d) scale is folded into Q beforehand;
* ``attention_qnorm``: softmax((Q / ||Q||) K^T) V: QK-norm decode with keys cached normalized
  (rms 1). (Q/||Q||) k equals rms_norm(q) k / sqrt(d): the usual scale, folded into the norm;
* ``ntrans``: rms_norm(X + alpha * (rms_norm(H) - X)) — nGPT's normalize-and-update.

Softmax is exp / row-sum without max subtraction, as in the paper's benchmarks; the models keep
scores O(1) so that exp stays in range (see ``models/decoder.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mirage.api import new_kernel_graph, new_threadblock_graph
from mirage.ir import H100, KernelGraph, Target
from mirage.workloads import programs, references
from mirage.workloads.programs import inputs_of
from mirage.workloads.references import N, _split

WIDE_TILES = (64, 32, 16)  # output-column tiles tried, widest first
MAX_TILE_K = 128  # reduction-dim tile: 128 beat 256 for the gated MLP on the H100 (NOTES.md)
MIN_KEYS_PER_SPLIT = 64  # one split-KV block reads at least this many keys ...
TILE_KV = 64  # ... in tiles of this many
ATTENTION_BLOCKS_PER_SM = 2
# RMSNorm + matmul streams W alone: 256-wide K tiles beat 128 (21.9 against 23.2 us at 16 rows,
# expected/kernels-h100.md); the gated MLP's two weight tiles prefer 128.
NORM_MATMUL_TILE_K = 256


# --- tiling derived from shapes ----------------------------------------------------------------


def column_tile(n: int, target: Target = H100) -> int:
    """Width of the output-column tile of a GEMV-like kernel with ``n`` columns.

    The widest tile that still gives at least half a block per SM (fewer, wider blocks re-read
    X less; NOTES.md saw 64 beat 32 at 96 blocks); else the narrowest tile that divides ``n``;
    ``n`` itself when none does (small test shapes).
    """
    for t in WIDE_TILES:
        if n % t == 0 and n // t >= target.num_sms // 2:
            return t
    for t in reversed(WIDE_TILES):
        if n % t == 0:
            return t
    return n


def reduction_tile(k: int, widest: int = MAX_TILE_K) -> int:
    """Tile of the reduction dim: ``widest``, smaller on small shapes so the loop still runs
    several iterations (tl.dot needs 16)."""
    for t in (t for t in (256, 128, 64, 32, 16) if t <= widest):
        if k % t == 0 and (k // t >= 4 or t == 16):
            return t
    return k


def kv_splits(heads: int, kv_len: int, target: Target = H100,
              blocks_per_sm: int = ATTENTION_BLOCKS_PER_SM) -> int:
    """Split-KV factor of decode attention: enough blocks (heads x splits) to fill the GPU
    ``ATTENTION_BLOCKS_PER_SM`` times over, a power of two, each split at least
    ``MIN_KEYS_PER_SPLIT`` keys (fewer on small shapes). 1 means one kernel, no combine."""
    want = max(1, blocks_per_sm * target.num_sms // heads)
    most = max(1, kv_len // min(MIN_KEYS_PER_SPLIT, max(16, kv_len // 4)))
    splits = 1
    while splits * 2 <= min(want, most) and kv_len % (splits * 2) == 0:
        splits *= 2
    return splits


# --- input programs ----------------------------------------------------------------------------


def norm_lora_program(shapes: dict, dtype: str = "fp16") -> KernelGraph:
    g = new_kernel_graph()
    x, w, a, b = inputs_of(g, shapes, dtype)
    xn = g.rms_norm(x)
    g.mark_output(g.add(g.matmul(xn, w), g.matmul(g.matmul(xn, a), b)))
    return g.kernel_graph()


def norm_gated_mlp_program(shapes: dict, dtype: str = "fp16") -> KernelGraph:
    g = new_kernel_graph()
    x, w1, w2 = inputs_of(g, shapes, dtype)
    xn = g.rms_norm(x)
    g.mark_output(g.mul(g.silu(g.matmul(xn, w1)), g.matmul(xn, w2)))
    return g.kernel_graph()


def attention_qnorm_program(shapes: dict, dtype: str = "fp16") -> KernelGraph:
    g = new_kernel_graph()
    q, k, v = inputs_of(g, shapes, dtype)
    unit_q = g.div(q, g.sqrt(g.reduce_sum(g.square(q), 2)))
    g.mark_output(programs.softmax_attention(g, unit_q, k, v))
    return g.kernel_graph()


# --- µGraphs -----------------------------------------------------------------------------------


def norm_matmul_graph(shapes: dict, dtype: str = "fp16", tile_n: int | None = None,
                      tile_k: int | None = None, target: Target = H100) -> KernelGraph:
    """rms_norm(X) W in one kernel (``references.rmsnorm`` at tiles derived from the shapes)."""
    n, k = shapes["W"][1], shapes["X"][1]
    return references.rmsnorm(shapes, dtype, tile_n or column_tile(n, target),
                              tile_k or reduction_tile(k, NORM_MATMUL_TILE_K))


def lora_graph(shapes: dict, dtype: str = "fp16", tile_n: int | None = None,
               tile_k: int | None = None, target: Target = H100) -> KernelGraph:
    """X W + (X A) B in one kernel (``references.lora`` at derived tiles)."""
    n, k = shapes["W"][1], shapes["X"][1]
    return references.lora(shapes, dtype, tile_n or column_tile(n, target),
                           tile_k or reduction_tile(k))


def gated_mlp_graph(shapes: dict, dtype: str = "fp16", tile_n: int | None = None,
                    tile_k: int | None = None, target: Target = H100) -> KernelGraph:
    """silu(X W1) * (X W2) in one kernel (``references.gatedmlp`` at derived tiles)."""
    n, k = shapes["W1"][1], shapes["X"][1]
    return references.gatedmlp(shapes, dtype, tile_n or column_tile(n, target),
                               tile_k or reduction_tile(k))


def norm_lora_graph(shapes: dict, dtype: str = "fp16", tile_n: int | None = None,
                    tile_k: int | None = None, target: Target = H100) -> KernelGraph:
    """rms_norm(X) W + (rms_norm(X) A) B in one kernel.

    As ``references.lora`` (each iteration adds X_k W_k + (X_k A_k) B: by linearity the sum is
    X W + (X A) B), plus the sum of squares of X accumulated in the same loop; the division by
    the RMS moves after the loop, where it distributes over the sum.
    """
    n, k = shapes["W"][1], shapes["X"][1]
    return references.lora(shapes, dtype, tile_n or column_tile(n, target),
                           tile_k or reduction_tile(k), normalize=True)


def norm_gated_mlp_graph(shapes: dict, dtype: str = "fp16", tile_n: int | None = None,
                         tile_k: int | None = None, target: Target = H100) -> KernelGraph:
    """silu(rms_norm(X) W1) * (rms_norm(X) W2) in one kernel: both matmuls and the sum of
    squares of X in one loop; after it each product is divided by the RMS, then SiLU and Mul."""
    g = new_kernel_graph()
    x, w1, w2 = inputs_of(g, shapes, dtype)
    n, k = w1.dim(1), x.dim(1)
    tile_n, tile_k = tile_n or column_tile(n, target), tile_k or reduction_tile(k)
    tb = new_threadblock_graph((_split(n, tile_n), 1, 1), _split(k, tile_k))
    tx = tb.new_input(x, (N, N, N), 1)
    t1 = tb.new_input(w1, (1, N, N), 0)
    t2 = tb.new_input(w2, (1, N, N), 0)
    a1 = tb.forloop_accum(tb.matmul(tx, t1))
    a2 = tb.forloop_accum(tb.matmul(tx, t2))
    rms = tb.forloop_accum(tx, "rms")
    tb.new_output(tb.mul(tb.silu(tb.div(a1, rms)), tb.div(a2, rms)), (1, N, N))
    (o,) = g.customized([x, w1, w2], tb)
    g.mark_output(o)
    return g.kernel_graph()


def _decode_attention(shapes: dict, dtype: str, qnorm: bool, splits: int | None,
                      tile_kv: int | None, target: Target) -> KernelGraph:
    """Split-KV decode attention.

    Kernel 1: grid (heads, splits); each block holds its head's few query rows (the group of
    query heads sharing the KV head), normalized once before the loop for ``qnorm``, and walks
    its share of the cache accumulating exp(q k^T) v and the row sums of exp. Kernel 2 sums the
    splits and divides. With one split, kernel 1 divides after its loop and there is no kernel
    2. Unlike ``references.gqa`` (256 query rows per head) the rows are not split: at decode
    there are at most a handful.
    """
    g = new_kernel_graph()
    q, k, v = inputs_of(g, shapes, dtype)
    heads, kv_len = q.dim(0), k.dim(1)
    splits = splits or kv_splits(heads, kv_len, target)
    per_split = kv_len // splits
    tile_kv = min(tile_kv or TILE_KV, per_split)
    kt = g.transpose(k, 1, 2)
    tb = new_threadblock_graph((heads, splits, 1), _split(per_split, tile_kv))
    tq = tb.new_input(q, (0, N, N), N)
    tkt = tb.new_input(kt, (0, 2, N), 2)
    tv = tb.new_input(v, (0, 1, N), 1)
    if qnorm:
        tq = tb.div(tq, tb.sqrt(tb.reduce_sum(tb.square(tq), 2)))
    e = tb.exp(tb.matmul(tq, tkt))
    out_part = tb.forloop_accum(tb.matmul(e, tv))
    sum_part = tb.forloop_accum(e, "sum_last")
    if splits == 1:
        tb.new_output(tb.div(out_part, sum_part), (0, N, N))
        (o,) = g.customized([q, kt, v], tb)
        g.mark_output(o)
        return g.kernel_graph()
    tb.new_output(out_part, (0, 2, N))
    tb.new_output(sum_part, (0, 2, N))
    o_parts, s_parts = g.customized([q, kt, v], tb)
    tc = new_threadblock_graph((heads, 1, 1), splits)
    total_out = tc.forloop_accum(tc.new_input(o_parts, (0, N, N), 2))
    total_sum = tc.forloop_accum(tc.new_input(s_parts, (0, N, N), 2))
    tc.new_output(tc.div(total_out, total_sum), (0, N, N))
    (o,) = g.customized([o_parts, s_parts], tc)
    g.mark_output(o)
    return g.kernel_graph()


def attention_graph(shapes: dict, dtype: str = "fp16", splits: int | None = None,
                    tile_kv: int | None = None, target: Target = H100) -> KernelGraph:
    return _decode_attention(shapes, dtype, False, splits, tile_kv, target)


def attention_qnorm_graph(shapes: dict, dtype: str = "fp16", splits: int | None = None,
                          tile_kv: int | None = None, target: Target = H100) -> KernelGraph:
    return _decode_attention(shapes, dtype, True, splits, tile_kv, target)


def ntrans_graph(shapes: dict, dtype: str = "fp16", target: Target = H100) -> KernelGraph:
    """nGPT's update in one kernel, one block per row (``references.ntrans``)."""
    return references.ntrans(shapes, dtype)


# --- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """One fusable subprogram: its input program and its µGraph builder, over the same shapes
    (input names in order)."""

    name: str
    inputs: tuple[str, ...]
    program: Callable[..., KernelGraph]
    graph: Callable[..., KernelGraph]
    description: str


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("norm_matmul", ("X", "W"), programs.rmsnorm, norm_matmul_graph, "rms_norm(X) W"),
    Kind("norm_lora", ("X", "W", "A", "B"), norm_lora_program, norm_lora_graph,
         "rms_norm(X) W + (rms_norm(X) A) B"),
    Kind("lora", ("X", "W", "A", "B"), programs.lora, lora_graph, "X W + (X A) B"),
    Kind("norm_gated_mlp", ("X", "W1", "W2"), norm_gated_mlp_program, norm_gated_mlp_graph,
         "silu(rms_norm(X) W1) * (rms_norm(X) W2)"),
    Kind("gated_mlp", ("X", "W1", "W2"), programs.gatedmlp, gated_mlp_graph,
         "silu(X W1) * (X W2)"),
    Kind("attention", ("Q", "K", "V"), programs.gqa, attention_graph,
         "softmax(Q K^T) V (decode, split-KV)"),
    Kind("attention_qnorm", ("Q", "K", "V"), attention_qnorm_program, attention_qnorm_graph,
         "softmax((Q / ||Q||) K^T) V (decode, split-KV)"),
    Kind("ntrans", ("H", "X", "alpha"), programs.ntrans, ntrans_graph,
         "rms_norm(X + alpha * (rms_norm(H) - X))"),
)}


# Second candidates worth timing on the GPU, per kind (the Figure 11 harness keeps the fastest):
# half the split-KV blocks for decode attention, and the narrower K tile for RMSNorm + matmul.
def _half_the_splits(shapes: dict, target: Target) -> dict:
    return {"splits": kv_splits(shapes["Q"][0], shapes["K"][1], target, blocks_per_sm=1)}


ALTERNATIVES: dict[str, Callable[[dict, Target], dict]] = {
    "attention": _half_the_splits,
    "attention_qnorm": _half_the_splits,
    "norm_matmul": lambda shapes, target: {"tile_k": reduction_tile(shapes["X"][1])},
}


def build(kind: str, shapes: dict, dtype: str = "fp16", target: Target = H100,
          **params) -> tuple[KernelGraph, list[KernelGraph]]:
    """The input program of ``kind`` at ``shapes`` and its µGraph candidates: the hand-written
    form at tiles derived from the shapes, then the ``ALTERNATIVES`` tiling where it differs
    (``params`` override the tiles, and then only that one graph is built)."""
    row = KINDS[kind]
    if tuple(shapes) != row.inputs:
        raise ValueError(f"{kind}: inputs {tuple(shapes)} != {row.inputs}")
    graphs = [row.graph(shapes, dtype, target=target, **params)]
    if not params and kind in ALTERNATIVES:
        other = row.graph(shapes, dtype, target=target, **ALTERNATIVES[kind](shapes, target))
        if other.digest != graphs[0].digest:
            graphs.append(other)
    return row.program(shapes, dtype), graphs
