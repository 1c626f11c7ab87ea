"""Liger-Kernel: the Triton kernels (RMSNorm, SwiGLU's SiLU-and-multiply) that LLM training and
serving stacks drop in place of PyTorch's, used when ``liger_kernel`` is importable.

Liger fuses one op at a time, so each case is the eager definition with Liger's kernel where it
has one and cuBLAS / torch ops elsewhere:

* RMSNorm: Liger's RMSNorm (no gain, eps 0 as the input program) then ``torch.matmul``;
* GatedMLP: two ``torch.matmul`` then Liger's fused ``silu(a) * b``;
* nTrans: Liger's RMSNorm for both norms, torch elementwise ops between them.

Its RMSNorm keeps the inverse RMS in fp32 (``casting_mode="llama"``), like our fp32 reference.
"""

from __future__ import annotations

import importlib

import torch

from baselines import Baseline, NotAvailable, require_cuda


def _liger_ops():
    try:
        rms = importlib.import_module("liger_kernel.ops.rms_norm")
        swiglu = importlib.import_module("liger_kernel.ops.swiglu")
    except Exception as e:  # ImportError, or a broken install raising anything at import
        raise NotAvailable(f"liger_kernel not importable ({type(e).__name__}: {e})") from None
    return rms.LigerRMSNormFunction, swiglu.LigerSiLUMulFunction


def _norm(rms_fn):
    # apply(X, W, eps, offset, casting_mode): no gain (W None) and no eps, as the input program.
    return lambda x: rms_fn.apply(x, None, 0.0, 0.0, "llama")


def build(case: str, shapes: dict, device):
    require_cuda(device)
    rms_fn, silu_mul_fn = _liger_ops()
    norm = _norm(rms_fn)
    if case == "rmsnorm":
        return lambda x, w: torch.matmul(norm(x), w)
    if case == "gatedmlp":
        return lambda x, w1, w2: silu_mul_fn.apply(torch.matmul(x, w1), torch.matmul(x, w2))
    if case == "ntrans":
        return lambda h, x, alpha: norm(x + alpha * (norm(h) - x))
    raise NotAvailable(f"Liger-Kernel has no kernel for {case}")


CASES = frozenset({"rmsnorm", "gatedmlp", "ntrans"})
BASELINES = (Baseline("liger", "triton-library", CASES, build,
                      "Liger-Kernel RMSNorm / SiLU-mul, cuBLAS matmuls"),)
