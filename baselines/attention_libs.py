"""Attention libraries, used when importable: FlashInfer and FlashAttention (``flash_attn``).

Both see our attention cases as H independent heads of 256 queries against 4096 keys, with
softmax scale 1.0 (the input program does not scale). QKNorm normalizes Q and K with torch ops
first. A layout change a library needs is part of its measured time.
"""

from __future__ import annotations

import functools
import importlib

import torch

from baselines import ATTENTION_CASES, Baseline, NotAvailable, require_cuda
from baselines.eager import rms_norm


def _import(module: str):
    try:
        return importlib.import_module(module)
    except Exception as e:  # ImportError, or a broken install raising anything at import
        raise NotAvailable(f"{module} not importable ({type(e).__name__}: {e})") from None


def _probe(fn, shapes: dict, device, what: str):
    probe = [torch.zeros(s, dtype=torch.float16, device=device) for s in shapes.values()]
    try:
        fn(*probe)
    except Exception as e:
        raise NotAvailable(f"{what} rejects these shapes: {type(e).__name__}: {e}") from None


# --- FlashInfer --------------------------------------------------------------------------------


def _flashinfer_call(flashinfer, contiguous_q: bool, normalize: bool, q, k, v):
    if normalize:
        q, k = rms_norm(q), rms_norm(k)
    # q as [qo_len, heads, dim]; K and V are already [heads, kv_len, dim], FlashInfer's "HND".
    qt = q.transpose(0, 1)
    if contiguous_q:
        qt = qt.contiguous()
    o = flashinfer.single_prefill_with_kv_cache(qt, k, v, causal=False, kv_layout="HND",
                                                sm_scale=1.0)
    return o.transpose(0, 1)


def build_flashinfer(case: str, shapes: dict, device):
    require_cuda(device)
    flashinfer = _import("flashinfer")
    normalize = case == "qknorm"
    fn = functools.partial(_flashinfer_call, flashinfer, False, normalize)
    try:  # a strided q view where the installed version accepts it, else one copy
        _probe(fn, shapes, device, "flashinfer (strided q)")
    except NotAvailable:
        fn = functools.partial(_flashinfer_call, flashinfer, True, normalize)
        _probe(fn, shapes, device, "flashinfer.single_prefill_with_kv_cache")
    return fn


# --- FlashAttention ----------------------------------------------------------------------------


def _flash_attn_call(flash_attn_func, normalize: bool, q, k, v):
    if normalize:
        q, k = rms_norm(q), rms_norm(k)
    # flash_attn_func takes [batch, seqlen, heads, dim]: each KV head is a batch of one head.
    o = flash_attn_func(q.unsqueeze(2), k.unsqueeze(2), v.unsqueeze(2), softmax_scale=1.0,
                        causal=False)
    return o.squeeze(2)


def build_flash_attn(case: str, shapes: dict, device):
    require_cuda(device)
    flash_attn = _import("flash_attn")
    fn = functools.partial(_flash_attn_call, flash_attn.flash_attn_func, case == "qknorm")
    _probe(fn, shapes, device, "flash_attn.flash_attn_func")
    return fn


BASELINES = (
    Baseline("flashinfer", "flashinfer", ATTENTION_CASES, build_flashinfer,
             "single_prefill_with_kv_cache, HND layout, sm_scale=1.0"),
    Baseline("flash-attn", "flash-attention", ATTENTION_CASES, build_flash_attn,
             "flash_attn_func, softmax_scale=1.0"),
)
