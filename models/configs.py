"""The four decoders of Figure 11 as data rows, plus tiny twins for the CPU tests.

Dims are PAPER.md's "End-to-end models" table. What the table leaves open, chosen here:

* vocabularies: LLaMA-3's 128,256; Chameleon's 65,536; GPT-3's 50,257 padded to 50,304 (a
  multiple of 64, as GPT-style training code pads it); 32,000 for nGPT-1B;
* nGPT-1B: 18 layers, which with hidden 2048, 16 heads of 128 and FFN 5632 is 1.06 B parameters
  with the embedding and the head;
* GPT-3-7B-LoRA: LLaMA-3-8B's layer (as the artifact) with one rank-16 adapter on the fused QKV
  projection and one on the output projection (GPT-style fused ``c_attn``); the MLP is not
  adapted.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

BYTES = 2  # fp16


@dataclass(frozen=True)
class ModelConfig:
    """One decoder. ``kv_len``: tokens in each sequence's KV cache, the new one included."""

    name: str
    title: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    kv_len: int = 4096
    qk_norm: bool = False  # RMS norm of q and k over the head dim (Chameleon; nGPT too)
    lora_rank: int = 0
    ngpt: bool = False  # normalized transformer: no pre-norms, normalize-and-update residuals
    rope_base: float = 10000.0
    note: str = ""

    @property
    def group(self) -> int:
        """Query heads per KV head."""
        return self.heads // self.kv_heads

    @property
    def q_cols(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_cols(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def qkv_cols(self) -> int:
        return self.q_cols + 2 * self.kv_cols

    def layer_params(self) -> int:
        d, r = self.hidden, self.lora_rank
        p = d * self.qkv_cols + self.q_cols * d + 3 * d * self.ffn
        if r:
            p += r * (d + self.qkv_cols) + r * (self.q_cols + d)
        return p + 4 * d  # gains or alphas

    def params(self) -> int:
        return self.layers * self.layer_params() + 2 * self.vocab * self.hidden + self.hidden

    def weight_bytes(self) -> int:
        return self.params() * BYTES

    def folded_bytes(self) -> int:
        """Extra weights of the Mirage variant: RMSNorm gains (and the 1/sqrt(d) of q) folded
        into copies of the matrices that follow a norm (none in nGPT, which has no gains)."""
        if self.ngpt:
            return 0
        d = self.hidden
        per_layer = d * self.qkv_cols + 2 * d * self.ffn + self.lora_rank * (d + self.qkv_cols)
        return (self.layers * per_layer + d * self.vocab) * BYTES

    def kv_bytes(self, batch: int) -> int:
        """The KV caches of ``batch`` sequences, all layers."""
        return 2 * self.layers * batch * self.kv_cols * self.kv_len * BYTES

    def validate(self) -> ModelConfig:
        if self.heads % self.kv_heads:
            raise ValueError(f"{self.name}: {self.heads} heads not a multiple of {self.kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"{self.name}: RoPE needs an even head dim")
        return self


MODELS: dict[str, ModelConfig] = {m.name: m.validate() for m in (
    ModelConfig("llama3-8b", "LLaMA-3-8B", hidden=4096, layers=32, heads=32, kv_heads=8,
                head_dim=128, ffn=14336, vocab=128256, rope_base=500000.0,
                note="RMSNorm, GQA (4 query heads per KV head), gated MLP (SiLU)"),
    ModelConfig("chameleon-7b", "Chameleon-7B", hidden=4096, layers=32, heads=32, kv_heads=32,
                head_dim=128, ffn=11008, vocab=65536, qk_norm=True,
                note="QK-norm (RMS over the head dim, no gain) before attention"),
    ModelConfig("gpt3-7b-lora", "GPT-3-7B-LoRA", hidden=4096, layers=32, heads=32, kv_heads=8,
                head_dim=128, ffn=14336, vocab=50304, lora_rank=16, rope_base=500000.0,
                note="LLaMA-3-8B layer dims, rank-16 LoRA on the QKV and output projections"),
    ModelConfig("ngpt-1b", "nGPT-1B", hidden=2048, layers=18, heads=16, kv_heads=16,
                head_dim=128, ffn=5632, vocab=32000, qk_norm=True, ngpt=True,
                note="normalized transformer: h <- Norm(h + alpha (Norm(block(h)) - h))"),
)}


def tiny(cfg: ModelConfig, **changes) -> ModelConfig:
    """A CPU-test twin of ``cfg``: the same structure (GQA group, QK-norm, LoRA, nGPT) at
    hidden 64, 2 layers, head dim 16 and a KV cache of 32 tokens."""
    kv_heads = 2 if cfg.group > 1 else 4
    small = dict(hidden=64, layers=2, heads=4, kv_heads=kv_heads, head_dim=16, ffn=96,
                 vocab=80, kv_len=32, lora_rank=4 if cfg.lora_rank else 0)
    small.update(changes)
    return dataclasses.replace(cfg, name=f"{cfg.name}-tiny", **small).validate()


def select(names: str | None) -> list[ModelConfig]:
    """Models from a comma list (None: all four, in table order); unknown names raise."""
    if not names:
        return list(MODELS.values())
    picked = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in picked if n not in MODELS]
    if unknown:
        raise ValueError(f"unknown model: {', '.join(unknown)} (known: {', '.join(MODELS)})")
    return [MODELS[n] for n in picked]
