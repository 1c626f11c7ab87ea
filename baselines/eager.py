"""PyTorch eager: the input programs written in torch ops, exactly as ``mirage.workloads`` defines
them. The same functions, applied to fp32 copies of the inputs, are the harness's reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from baselines import ALL_CASES, Baseline


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    """x / sqrt(mean(x^2)) over the last dim, without eps (as the input programs)."""
    return x / torch.sqrt(torch.mean(x * x, dim=-1, keepdim=True))


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T) v with softmax as exp / row-sum: no scaling, no max subtraction."""
    e = torch.exp(torch.matmul(q, k.transpose(-1, -2)))
    return torch.matmul(e / e.sum(dim=-1, keepdim=True), v)


def gqa(q, k, v):
    return attention(q, k, v)


def qknorm(q, k, v):
    return attention(rms_norm(q), rms_norm(k), v)


def rmsnorm(x, w):
    return torch.matmul(rms_norm(x), w)


def lora(x, w, a, b):
    return torch.matmul(x, w) + torch.matmul(torch.matmul(x, a), b)


def gatedmlp(x, w1, w2):
    return F.silu(torch.matmul(x, w1)) * torch.matmul(x, w2)


def ntrans(h, x, alpha):
    return rms_norm(x + alpha * (rms_norm(h) - x))


DEFINITIONS = {
    "gqa": gqa,
    "qknorm": qknorm,
    "rmsnorm": rmsnorm,
    "lora": lora,
    "gatedmlp": gatedmlp,
    "ntrans": ntrans,
}


def build(case: str, shapes: dict, device) -> object:
    return DEFINITIONS[case]


BASELINES = (Baseline("eager", "pytorch", ALL_CASES, build, "torch ops, one kernel per op"),)
