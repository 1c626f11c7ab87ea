"""Programs taken from real decoder layers (LLaMA-3, Mistral, Qwen, GPT-2, Gemma, LoRA), written
with the public builder, as data rows: a builder taking the shape parameters, the real shapes of
the model they come from, and small shapes that keep a CPU search within the test tier.

``tests/test_decoder_programs.py`` searches each at its small shapes. None of these programs is
one of the paper's six workloads, and nothing in the search knows them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import mirage as mi


@dataclass(frozen=True)
class DecoderProgram:
    name: str
    source: str  # where the pattern comes from
    build: Callable[..., mi.KernelGraph]
    real: dict  # the model's shapes
    small: dict  # shapes for a CPU search


def rmsnorm_gain_proj(b, h, n):
    g = mi.new_kernel_graph()
    x, gain = g.new_input((b, h), name="x"), g.new_input((1, h), name="gain")
    w = g.new_input((h, n), name="w")
    g.mark_output(g.matmul(g.mul(g.rms_norm(x, eps=1e-6), gain), w))
    return g.kernel_graph()


def gemma_rmsnorm_offset(b, h):
    g = mi.new_kernel_graph()
    x, gain = g.new_input((b, h), name="x"), g.new_input((1, h), name="gain")
    g.mark_output(g.mul(g.rms_norm(x, eps=1e-6), g.add(gain, 1.0)))
    return g.kernel_graph()


def fused_add_rmsnorm(b, h, norm_first=False):
    """Two outputs: the residual sum and its norm (``norm_first``: the norm is output 0)."""
    g = mi.new_kernel_graph()
    x, residual = g.new_input((b, h), name="x"), g.new_input((b, h), name="residual")
    s = g.add(x, residual)
    y = g.rms_norm(s, eps=1e-5)
    for out in ((y, s) if norm_first else (s, y)):
        g.mark_output(out)
    return g.kernel_graph()


def qkv_projection(b, h, nq, nkv):
    g = mi.new_kernel_graph()
    x = g.new_input((b, h), name="x")
    for name, n in (("wq", nq), ("wk", nkv), ("wv", nkv)):
        g.mark_output(g.matmul(x, g.new_input((h, n), name=name)))
    return g.kernel_graph()


def attention_decode(heads, q, kv, d):
    """softmax(q k^T / sqrt(d)) v with the row max subtracted, one query block per head."""
    g = mi.new_kernel_graph()
    qt = g.new_input((heads, q, d), name="q")
    kt = g.new_input((heads, d, kv), name="k_t")
    v = g.new_input((heads, kv, d), name="v")
    s = g.mul(g.matmul(qt, kt), 1.0 / math.sqrt(d))
    e = g.exp(g.sub(s, g.reduce_max(s, -1)))
    g.mark_output(g.matmul(g.div(e, g.reduce_sum(e, -1)), v))
    return g.kernel_graph()


def attention_scores(heads, q, kv, d):
    g = mi.new_kernel_graph()
    qt, kt = g.new_input((heads, q, d), name="q"), g.new_input((heads, d, kv), name="k_t")
    g.mark_output(g.mul(g.matmul(qt, kt), 1.0 / math.sqrt(d)))
    return g.kernel_graph()


def stable_softmax(rows, n):
    g = mi.new_kernel_graph()
    x = g.new_input((rows, n), name="logits")
    e = g.exp(g.sub(x, g.reduce_max(x, -1)))
    g.mark_output(g.div(e, g.reduce_sum(e, -1)))
    return g.kernel_graph()


def swiglu(b, h, f):
    g = mi.new_kernel_graph()
    x = g.new_input((b, h), name="x")
    w1, w3 = g.new_input((h, f), name="w_gate"), g.new_input((h, f), name="w_up")
    w2 = g.new_input((f, h), name="w_down")
    g.mark_output(g.matmul(g.mul(g.silu(g.matmul(x, w1)), g.matmul(x, w3)), w2))
    return g.kernel_graph()


def gate_up(b, h, f):
    """SwiGLU's first half, silu written as x * sigmoid(x) (as some model code does)."""
    g = mi.new_kernel_graph()
    x = g.new_input((b, h), name="x")
    a = g.matmul(x, g.new_input((h, f), name="w_gate"))
    up = g.matmul(x, g.new_input((h, f), name="w_up"))
    g.mark_output(g.mul(g.mul(a, g.sigmoid(a)), up))
    return g.kernel_graph()


def layernorm(b, h, eps=1e-5):
    g = mi.new_kernel_graph()
    x = g.new_input((b, h), name="x")
    c = g.sub(x, g.reduce_mean(x, -1))
    g.mark_output(g.div(c, g.sqrt(g.add(g.reduce_mean(g.square(c), -1), eps))))
    return g.kernel_graph()


def gelu_mlp_up(b, h, f):
    g = mi.new_kernel_graph()
    x, w = g.new_input((b, h), name="x"), g.new_input((h, f), name="w_fc")
    g.mark_output(g.gelu(g.matmul(x, w)))
    return g.kernel_graph()


def gelu_exact_head(b, h, v):
    g = mi.new_kernel_graph()
    x, w = g.new_input((b, h), name="x"), g.new_input((h, v), name="w_head")
    g.mark_output(g.matmul(g.gelu(x, approximate="none"), w))
    return g.kernel_graph()


def softcap(shape, cap=30.0):
    g = mi.new_kernel_graph()
    x = g.new_input(shape, name="logits")
    g.mark_output(g.mul(g.tanh(g.div(x, cap)), cap))
    return g.kernel_graph()


def lora(b, h, r, n, alpha):
    g = mi.new_kernel_graph()
    x, w = g.new_input((b, h), name="x"), g.new_input((h, n), name="w")
    a, bb = g.new_input((h, r), name="lora_a"), g.new_input((r, n), name="lora_b")
    g.mark_output(g.add(g.matmul(x, w), g.mul(g.matmul(g.matmul(x, a), bb), alpha / r)))
    return g.kernel_graph()


def relu_mlp(b, h, f):
    g = mi.new_kernel_graph()
    x = g.new_input((b, h), name="x")
    w1, w2 = g.new_input((h, f), name="w1"), g.new_input((f, h), name="w2")
    g.mark_output(g.matmul(g.relu(g.matmul(x, w1)), w2))
    return g.kernel_graph()


def scaled_residual(b, h, alpha):
    g = mi.new_kernel_graph()
    x, y = g.new_input((b, h), name="x"), g.new_input((b, h), name="branch")
    g.mark_output(g.add(x, g.mul(y, alpha)))
    return g.kernel_graph()


PROGRAMS = {p.name: p for p in (
    DecoderProgram("rmsnorm_gain_proj", "LLaMA-3 input norm + projection", rmsnorm_gain_proj,
                   dict(b=16, h=4096, n=4096), dict(b=8, h=128, n=128)),
    DecoderProgram("gemma_rmsnorm_offset", "Gemma RMSNorm, gain (1 + w)", gemma_rmsnorm_offset,
                   dict(b=16, h=3072), dict(b=8, h=256)),
    DecoderProgram("fused_add_rmsnorm", "residual add + RMSNorm, two outputs",
                   fused_add_rmsnorm, dict(b=16, h=4096), dict(b=8, h=256)),
    DecoderProgram("qkv_projection", "LLaMA-3-8B Q, K, V projections (GQA widths)",
                   qkv_projection, dict(b=16, h=4096, nq=4096, nkv=1024),
                   dict(b=8, h=128, nq=128, nkv=32)),
    DecoderProgram("attention_decode", "Mistral decode attention, scale + stable softmax",
                   attention_decode, dict(heads=32, q=16, kv=4096, d=128),
                   dict(heads=2, q=16, kv=64, d=32)),
    DecoderProgram("attention_scores", "scaled QK^T", attention_scores,
                   dict(heads=32, q=16, kv=4096, d=128), dict(heads=2, q=16, kv=64, d=32)),
    DecoderProgram("stable_softmax", "softmax with the row max subtracted", stable_softmax,
                   dict(rows=512, n=4096), dict(rows=16, n=128)),
    DecoderProgram("swiglu", "Qwen-7B SwiGLU MLP (11008 wide)", swiglu,
                   dict(b=16, h=4096, f=11008), dict(b=8, h=128, f=176)),
    DecoderProgram("gate_up_sigmoid", "SwiGLU gate with silu as x * sigmoid(x)", gate_up,
                   dict(b=16, h=4096, f=14336), dict(b=8, h=128, f=128)),
    DecoderProgram("layernorm", "GPT-2 LayerNorm spelled with reduce_mean", layernorm,
                   dict(b=16, h=768), dict(b=8, h=256)),
    DecoderProgram("gelu_mlp_up", "GPT-2 MLP c_fc + GELU (tanh)", gelu_mlp_up,
                   dict(b=16, h=768, f=3072), dict(b=8, h=128, f=256)),
    DecoderProgram("gelu_exact_head", "exact GELU before a vocabulary projection",
                   gelu_exact_head, dict(b=16, h=768, v=50257), dict(b=4, h=128, v=1000)),
    DecoderProgram("softcap", "Gemma-2 logit soft-capping, tanh(x / 30) * 30", softcap,
                   dict(shape=(16, 256000), cap=30.0), dict(shape=(8, 512), cap=30.0)),
    DecoderProgram("lora", "LoRA with alpha / r = 32 / 16", lora,
                   dict(b=16, h=4096, r=16, n=4096, alpha=32.0),
                   dict(b=8, h=256, r=16, n=256, alpha=32.0)),
    DecoderProgram("relu_mlp", "OPT-style ReLU MLP", relu_mlp, dict(b=16, h=4096, f=16384),
                   dict(b=8, h=128, f=512)),
    DecoderProgram("scaled_residual", "nGPT-style scaled residual x + a * y", scaled_residual,
                   dict(b=16, h=4096, alpha=0.05), dict(b=8, h=256, alpha=0.05)),
)}
