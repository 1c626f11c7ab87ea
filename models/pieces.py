"""Which subprograms of each model a µGraph may replace, and at which shapes.

A *piece* is a named call site of ``models.decoder.layer_forward`` (``attn_in``, ``attend``,
``attn_out``, ``update``, ``mlp``) or the model's ``head``. ``piece_kinds(cfg)`` maps the pieces a
model can fuse to a kind of ``mirage.workloads.models``; ``piece_shapes(cfg, b)`` gives the kind's
input shapes at batch ``b``. Where a µGraph is missing, wrong or slower, the Mirage variant
runs the PyTorch model's own code for the piece (``models.decoder.TorchPieces``).

Saved µGraphs live in ``saved_mugraphs/models/<model>_<piece>_b<b>.json``
(``scripts/write_model_mugraphs.py`` writes them).
"""

from __future__ import annotations

from pathlib import Path

from models.configs import ModelConfig

SAVED_SUBDIR = "models"


def piece_kinds(cfg: ModelConfig) -> dict[str, str]:
    """piece -> kind, for the pieces of ``cfg`` that have a fusable form."""
    kinds = {}
    if not cfg.ngpt:  # nGPT's QKV projection has no norm in front: a plain matmul
        kinds["attn_in"] = "norm_lora" if cfg.lora_rank else "norm_matmul"
    kinds["attend"] = "attention_qnorm" if cfg.qk_norm else "attention"
    if cfg.lora_rank:
        kinds["attn_out"] = "lora"
    if cfg.ngpt:
        kinds["update"] = "ntrans"
    kinds["mlp"] = "gated_mlp" if cfg.ngpt else "norm_gated_mlp"
    if not cfg.ngpt:  # nGPT's head is a plain matmul too
        kinds["head"] = "norm_matmul"
    return kinds


def piece_shapes(cfg: ModelConfig, b: int) -> dict[str, dict[str, tuple[int, ...]]]:
    """piece -> {input name: shape} at batch ``b`` (only the pieces of ``piece_kinds``)."""
    d, r = cfg.hidden, cfg.lora_rank
    heads = b * cfg.kv_heads  # each sequence has its own cache: b x kv_heads independent heads
    cache = (heads, cfg.kv_len, cfg.head_dim)
    all_shapes = {
        "attn_in": {"X": (b, d), "W": (d, cfg.qkv_cols)}
        | ({"A": (d, r), "B": (r, cfg.qkv_cols)} if r else {}),
        "attend": {"Q": (heads, cfg.group, cfg.head_dim), "K": cache, "V": cache},
        "attn_out": {"X": (b, cfg.q_cols), "W": (cfg.q_cols, d), "A": (cfg.q_cols, r),
                     "B": (r, d)},
        "update": {"H": (b, d), "X": (b, d), "alpha": (b, d)},
        "mlp": {"X": (b, d), "W1": (d, cfg.ffn), "W2": (d, cfg.ffn)},
        "head": {"X": (b, d), "W": (d, cfg.vocab)},
    }
    return {p: all_shapes[p] for p in piece_kinds(cfg)}


def saved_path(saved_dir: Path, cfg: ModelConfig, piece: str, b: int) -> Path:
    return Path(saved_dir) / SAVED_SUBDIR / f"{cfg.name}_{piece}_b{b}.json"

