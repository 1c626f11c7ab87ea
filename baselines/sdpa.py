"""torch's scaled_dot_product_attention, one baseline per backend (flash, cuDNN, efficient).

Our attention cases have Q (H, 256, 64) against K, V (H, 4096, 64): each of the H KV heads serves
256 query rows (8 query heads x 32 tokens), which SDPA sees as batch H, one head, 256 queries.
``scale=1.0`` because the input program does not scale the scores; SDPA's max subtraction is
mathematically the same softmax. QKNorm normalizes Q and K with torch ops first.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from baselines import ATTENTION_CASES, Baseline, NotAvailable, require_cuda
from baselines.eager import rms_norm

BACKENDS = {
    "sdpa-flash": SDPBackend.FLASH_ATTENTION,
    "sdpa-cudnn": SDPBackend.CUDNN_ATTENTION,
    "sdpa-efficient": SDPBackend.EFFICIENT_ATTENTION,
}


def _attention(backend, normalize: bool, q, k, v):
    if normalize:
        q, k = rms_norm(q), rms_norm(k)
    with sdpa_kernel([backend]):
        o = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1),
                                           scale=1.0)
    return o.squeeze(1)


def build(name: str, case: str, shapes: dict, device):
    require_cuda(device)
    fn = functools.partial(_attention, BACKENDS[name], case == "qknorm")
    # Probe once at the real shapes: a backend with no kernel for them says so here.
    probe = [torch.zeros(s, dtype=torch.float16, device=device) for s in shapes.values()]
    try:
        fn(*probe)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise NotAvailable(f"{BACKENDS[name].name} has no kernel here: {first}") from None
    return fn


BASELINES = tuple(
    Baseline(name, "sdpa", ATTENTION_CASES, functools.partial(build, name),
             f"torch SDPA, backend {backend.name}, scale=1.0")
    for name, backend in BACKENDS.items()
)
