"""A small, readable decoder: random fp16 weights of the right shapes, a KV cache, one decode step.

One function, ``layer_forward``, is the decoder layer of all four models; what differs between
them (``ModelConfig``: GQA group, QK-norm, LoRA, nGPT) is read from the config, and the fusable
subprograms go through a *pieces* object, so that the PyTorch model (``TorchPieces``), its
torch.compile twin and the Mirage variant (``models.mirage_variant.MiragePieces``) run the same
layer code and differ only in who computes each piece::

    qkv = P.attn_in(x, w)                      # [RMSNorm +] QKV projection [+ LoRA]
    q, k = RoPE(q), RoPE(k); k = norm(k) (QK-norm models); write k, v into the cache
    o = P.attend(q, k_cache, v_cache)          # [q-norm +] attention over the whole cache
    x = P.residual(x, P.attn_out(o, w), w)     # output projection [+ LoRA]; add or nGPT update
    x = P.residual(x, P.mlp(x, w) @ W_down, w) # [RMSNorm +] gated MLP; add or nGPT update

Decode step: one new token per sequence at position ``kv_len - 1``. Its K and V are written into
the cache in place (slot ``kv_len - 1``) and attention runs over all ``kv_len`` entries, the
4095 cached tokens and the new one. The cache holds random keys and values of the scale the
model's own projections produce (N(0, 1) entries; rms-normalized keys where K is normed).

Numerics, chosen so that exp of the unshifted scores stays in range (the µGraphs' softmax has no
max subtraction): weights are N(0, 1/fan_in), so projections of normalized states have O(1)
entries and q k / sqrt(d) is O(1). QK-norm is an RMS norm over the head dim without a gain (as the
paper's QKNorm case); RoPE preserves each pair's norm, so norm and RoPE commute and the q-norm can
sit in ``attend``. nGPT keeps hidden states on the sphere of radius sqrt(hidden) (rms 1), so its
Norm is ``rms_norm``; its s_qk scales are at their initial value 1, which makes its attention
(unit q, k, softmax scale sqrt(d)) the same as QK-norm with the usual 1/sqrt(d). All RMS norms in
torch use eps 1e-5; the µGraphs have none (a relative difference below 1e-5 here).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from models.configs import ModelConfig

EPS = 1e-5


def rms_norm(x: torch.Tensor, gain: torch.Tensor | None = None) -> torch.Tensor:
    return F.rms_norm(x, (x.shape[-1],), gain, EPS)


def ngpt_update(x: torch.Tensor, h: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """nGPT's residual: Norm(x + alpha (Norm(h) - x))."""
    return rms_norm(x + alpha * (rms_norm(h) - x))


# --- weights and cache ---------------------------------------------------------------------------


def _randn(gen, shape, std, device) -> torch.Tensor:
    return (torch.randn(shape, generator=gen, device=device, dtype=torch.float32) * std).half()


def _uniform(gen, shape, lo, hi, device) -> torch.Tensor:
    u = torch.rand(shape, generator=gen, device=device, dtype=torch.float32)
    return (lo + (hi - lo) * u).half()


def random_weights(cfg: ModelConfig, device, seed: int = 0) -> dict:
    """The model's weights, N(0, 1/fan_in) matrices stored (in, out) so a projection is x @ W.

    ``layers`` is a list of per-layer dicts; ``embed``, ``head`` and (not nGPT) ``final_norm``
    are global. Gains are U(0.8, 1.2), nGPT's alphas U(0.02, 0.2), LoRA's B N(0, 0.25/r) (a
    trained adapter, not the all-zero B of initialization, so a wrong adapter shows).
    """
    gen = torch.Generator(device=device).manual_seed(seed)
    d, f, r = cfg.hidden, cfg.ffn, cfg.lora_rank
    layers = []
    for _ in range(cfg.layers):
        w = {
            "wqkv": _randn(gen, (d, cfg.qkv_cols), d ** -0.5, device),
            "wo": _randn(gen, (cfg.q_cols, d), cfg.q_cols ** -0.5, device),
            "w13": _randn(gen, (d, 2 * f), d ** -0.5, device),  # gate | up
            "w2": _randn(gen, (f, d), f ** -0.5, device),
        }
        if cfg.ngpt:
            w["alpha_attn"] = _uniform(gen, (d,), 0.02, 0.2, device)
            w["alpha_mlp"] = _uniform(gen, (d,), 0.02, 0.2, device)
        else:
            w["attn_norm"] = _uniform(gen, (d,), 0.8, 1.2, device)
            w["mlp_norm"] = _uniform(gen, (d,), 0.8, 1.2, device)
        if r:
            w["qkv_a"] = _randn(gen, (d, r), d ** -0.5, device)
            w["qkv_b"] = _randn(gen, (r, cfg.qkv_cols), 0.5 * r ** -0.5, device)
            w["o_a"] = _randn(gen, (cfg.q_cols, r), cfg.q_cols ** -0.5, device)
            w["o_b"] = _randn(gen, (r, d), 0.5 * r ** -0.5, device)
        layers.append(w)
    embed = _randn(gen, (cfg.vocab, d), 1.0, device)
    if cfg.ngpt:  # nGPT's embeddings live on the sphere too
        embed = rms_norm(embed)
    weights = {"layers": layers, "embed": embed,
               "head": _randn(gen, (d, cfg.vocab), d ** -0.5, device)}
    if not cfg.ngpt:
        weights["final_norm"] = _uniform(gen, (d,), 0.8, 1.2, device)
    return weights


@dataclass
class Cache:
    """Per-layer K and V caches, (batch, kv_heads, kv_len, head_dim) each, and the slot the
    decode step writes (``pos``, also as a 1-element tensor for ``index_copy_``)."""

    k: list[torch.Tensor]
    v: list[torch.Tensor]
    pos: int
    pos_t: torch.Tensor

    @property
    def batch(self) -> int:
        return self.k[0].shape[0]


def random_cache(cfg: ModelConfig, batch: int, device, seed: int = 1) -> Cache:
    gen = torch.Generator(device=device).manual_seed(seed)
    shape = (batch, cfg.kv_heads, cfg.kv_len, cfg.head_dim)
    ks, vs = [], []
    for _ in range(cfg.layers):
        k = torch.randn(shape, generator=gen, device=device, dtype=torch.float16)
        if cfg.qk_norm:
            k = rms_norm(k)
        ks.append(k)
        vs.append(torch.randn(shape, generator=gen, device=device, dtype=torch.float16))
    pos = cfg.kv_len - 1
    return Cache(ks, vs, pos, torch.tensor([pos], device=device))


@dataclass(frozen=True)
class Rope:
    """Rotary embedding at the decode position (rotate-half), applied to the query and key heads
    together: cos and sin over the head dim, or per head when ``q_scale`` multiplies the query
    heads' tables (a scale folded into RoPE costs nothing: the Mirage variant's way to give its
    attention µGraphs, whose softmax has no scale, q / sqrt(d))."""

    cos: torch.Tensor
    sin: torch.Tensor

    @classmethod
    def at(cls, cfg: ModelConfig, pos: int, device, q_scale: float | None = None) -> Rope:
        half = cfg.head_dim // 2
        inv = cfg.rope_base ** (-torch.arange(half, dtype=torch.float64) / half)
        angle = pos * inv
        cos, sin = torch.cat([angle.cos(), angle.cos()]), torch.cat([angle.sin(), angle.sin()])
        if q_scale is not None:
            heads = torch.ones(cfg.heads + cfg.kv_heads, 1, dtype=torch.float64)
            heads[:cfg.heads] = q_scale
            cos, sin = heads * cos, heads * sin
        return cls(cos.to(device, torch.float16), sin.to(device, torch.float16))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return torch.addcmul(x * self.cos, rotated, self.sin)


# --- the layer -----------------------------------------------------------------------------------


ATTENTION_FORMS = ("rows", "heads")


class TorchPieces:
    """The fusable pieces in torch ops on the model's own weights: the PyTorch baseline.

    ``attention_form`` is how grouped-query attention is handed to SDPA: ``rows`` (each KV
    head's group of query heads as its query rows: K and V read once, b x kv_heads programs) or
    ``heads`` (one query row per head with ``enable_gqa``: b x heads programs). Which is faster
    depends on the batch; the harness times both and gives the baseline the faster one.
    """

    def __init__(self, cfg: ModelConfig, attention_form: str = "rows"):
        if attention_form not in ATTENTION_FORMS:
            raise ValueError(f"attention_form {attention_form!r}: one of {ATTENTION_FORMS}")
        self.cfg = cfg
        self.attention_form = attention_form
        self.attn_scale = cfg.head_dim ** -0.5  # 1.0 where q comes pre-scaled (Mirage)

    def attn_in(self, x, w):
        xn = x if self.cfg.ngpt else rms_norm(x, w["attn_norm"])
        qkv = xn @ w["wqkv"]
        if self.cfg.lora_rank:
            qkv = qkv + (xn @ w["qkv_a"]) @ w["qkv_b"]
        return qkv

    def attend(self, q, k_cache, v_cache):
        """SDPA over the whole cache (one new token per sequence: no mask, no K/V repeat)."""
        c = self.cfg
        b = q.shape[0]
        if c.qk_norm:
            q = rms_norm(q)
        if self.attention_form == "heads" and c.group > 1:
            o = F.scaled_dot_product_attention(q.unsqueeze(2), k_cache, v_cache,
                                               scale=self.attn_scale, enable_gqa=True)
        else:
            o = F.scaled_dot_product_attention(q.view(b, c.kv_heads, c.group, c.head_dim),
                                               k_cache, v_cache, scale=self.attn_scale)
        return o.reshape(b, c.q_cols)

    def attn_out(self, o, w):
        a = o @ w["wo"]
        if self.cfg.lora_rank:
            a = a + (o @ w["o_a"]) @ w["o_b"]
        return a

    def residual(self, x, h, w, which: str):
        if self.cfg.ngpt:
            return ngpt_update(x, h, w[f"alpha_{which}"])
        return x + h

    def mlp(self, x, w):
        xn = x if self.cfg.ngpt else rms_norm(x, w["mlp_norm"])
        gate_up = xn @ w["w13"]
        f = self.cfg.ffn
        return F.silu(gate_up[:, :f]) * gate_up[:, f:]

    def head(self, x, final_norm, head):
        xn = x if final_norm is None else rms_norm(x, final_norm)
        return xn @ head


def layer_forward(cfg: ModelConfig, pieces, rope: Rope, x, w, k_cache, v_cache, pos_t):
    """One decoder layer for one new token per sequence; writes its K, V at ``pos_t``."""
    b = x.shape[0]
    qkv = pieces.attn_in(x, w)
    n_qk = cfg.heads + cfg.kv_heads
    qk = rope(qkv[:, :n_qk * cfg.head_dim].view(b, n_qk, cfg.head_dim))
    q, k = qk[:, :cfg.heads], qk[:, cfg.heads:]
    if cfg.qk_norm:
        k = rms_norm(k)
    v = qkv[:, n_qk * cfg.head_dim:].view(b, cfg.kv_heads, cfg.head_dim)
    k_cache.index_copy_(2, pos_t, k.unsqueeze(2))
    v_cache.index_copy_(2, pos_t, v.unsqueeze(2))
    o = pieces.attend(q, k_cache, v_cache)
    x = pieces.residual(x, pieces.attn_out(o, w), w, "attn")
    return pieces.residual(x, pieces.mlp(x, w) @ w["w2"], w, "mlp")


# --- variants ------------------------------------------------------------------------------------


class Decoder:
    """A model with random weights on ``device``; variants share its weights and caches.
    ``attention_form``: the SDPA form its pieces use (see ``TorchPieces``; the harness sets the
    faster one per batch size)."""

    def __init__(self, cfg: ModelConfig, device, seed: int = 0):
        self.cfg = cfg
        self.device = torch.device(device)
        with torch.no_grad():
            self.weights = random_weights(cfg, self.device, seed)
        self.rope = Rope.at(cfg, cfg.kv_len - 1, self.device)
        self.attention_form = "rows"


class Variant:
    """One implementation of a decoder: ``step(tokens)`` -> logits over the whole model,
    ``layer(x)`` -> layer 0 alone (the per-layer figure). ``layer_fn`` and ``head_fn`` compute
    a layer and the head; subclasses swap them (torch.compile) or the pieces (Mirage)."""

    name = "pytorch"

    def __init__(self, model: Decoder, cache: Cache, pieces=None, rope: Rope | None = None):
        self.model, self.cache, self.cfg = model, cache, model.cfg
        self.pieces = pieces or TorchPieces(model.cfg, model.attention_form)
        self.layer_fn = functools.partial(layer_forward, self.cfg, self.pieces,
                                          rope or model.rope)
        self.head_fn = self.pieces.head
        self.layer_weights = model.weights["layers"]

    def head_args(self) -> tuple:
        w = self.model.weights
        return w.get("final_norm"), w["head"]

    def embed(self, tokens) -> torch.Tensor:
        return F.embedding(tokens, self.model.weights["embed"])

    def step(self, tokens) -> torch.Tensor:
        x = self.embed(tokens)
        c = self.cache
        for i, w in enumerate(self.layer_weights):
            x = self.layer_fn(x, w, c.k[i], c.v[i], c.pos_t)
        return self.head_fn(x, *self.head_args())

    def layer(self, x) -> torch.Tensor:
        c = self.cache
        return self.layer_fn(x, self.layer_weights[0], c.k[0], c.v[0], c.pos_t)


class CompiledVariant(Variant):
    """The PyTorch model with its layer and its head under ``torch.compile`` (Inductor).

    ``dynamic=None``: the first batch size compiles static, a second one recompiles with the
    batch dim symbolic and later ones reuse that graph, so three batch sizes cost two compiles.
    Call ``torch._dynamo.reset()`` between models. Inductor's own CUDA graphs are off (mode
    ``default``), so the harness captures every variant in a CUDA graph the same way.
    """

    name = "torch.compile"

    def __init__(self, model: Decoder, cache: Cache, compiled: tuple | None = None,
                 mode: str = "default", backend: str = "inductor", pieces=None):
        super().__init__(model, cache, pieces)
        if compiled is None:
            compiled = compile_fns(model.cfg, self.pieces, model.rope, mode, backend)
        self.layer_fn, self.head_fn = compiled
        self.compiled = compiled


def compile_fns(cfg: ModelConfig, pieces, rope: Rope, mode: str = "default",
                backend: str = "inductor") -> tuple:
    """The (layer, head) functions of ``CompiledVariant``, to reuse across batch sizes."""
    kwargs = {"fullgraph": True, "dynamic": None, "backend": backend}
    if backend == "inductor":
        kwargs["mode"] = mode
    layer = torch.compile(functools.partial(layer_forward, cfg, pieces, rope), **kwargs)
    return layer, torch.compile(pieces.head, **kwargs)


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """max|out - ref| / max|ref| (the harness's metric); inf for a shape or finiteness fault."""
    if tuple(out.shape) != tuple(ref.shape):
        return math.inf
    out, ref = out.detach().float(), ref.detach().float()
    if not bool(torch.isfinite(out).all()):
        return math.inf
    scale = float(ref.abs().max())
    return float((out - ref).abs().max()) / (scale if scale > 0 else 1.0)
