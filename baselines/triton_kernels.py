"""Hand-written Triton kernels, one per case, of the quality of the Triton tutorials.

What a competent user writes after tutorials 03 (matmul), 05 (layer norm) and 06 (fused
attention): one fused kernel per case, fp32 accumulation, masks on every edge, a small
``triton.autotune`` list of tile configs; no split-K, no split-KV, no persistent kernels.

* attention (GQA, QKNorm): tutorial-06 style, one program per (query tile, head), online softmax
  (max subtraction, mathematically the program's exp / row-sum); QKNorm normalizes the Q tile
  once and each K tile as it is loaded.
* RMSNorm + MatMul, GatedMLP, LoRA: skinny matmuls (a few rows) with one program per column tile
  walking the shared dim; the row norm, the SiLU gate and the low-rank product are fused in.
* nTrans: one program per row (tutorial 05).

``aot_compile`` compiles every kernel and config for a GPU target without a GPU (the CPU test
tier uses it for sm_90); launchers take ``config=`` to bypass autotuning (the interpreter tier).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from baselines import ALL_CASES, Baseline, require_cuda

# --- attention ---------------------------------------------------------------------------------

ATTENTION_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
    for bm, bn, w, s in [(16, 64, 4, 3), (32, 64, 4, 3), (64, 64, 4, 3), (64, 128, 4, 3),
                         (128, 64, 8, 3), (32, 128, 4, 2)]
]


@triton.autotune(configs=ATTENTION_CONFIGS, key=["M", "N_CTX", "HEAD_DIM", "NORMALIZE"])
@triton.jit
def attention_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr,
    M, N_CTX,
    stride_qh, stride_qm, stride_kh, stride_kn, stride_vh, stride_vn, stride_oh, stride_om,
    HEAD_DIM: tl.constexpr, NORMALIZE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """O[h] = softmax(Q[h] K[h]^T) V[h] for one BLOCK_M tile of query rows of head h."""
    pid_m = tl.program_id(0)
    pid_h = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q_ptrs = q_ptr + pid_h * stride_qh + offs_m[:, None] * stride_qm + offs_d[None, :]
    q = tl.load(q_ptrs, mask=offs_m[:, None] < M, other=0.0)
    if NORMALIZE:  # rms_norm over the head dim
        qf = q.to(tl.float32)
        q = (qf / tl.sqrt(tl.sum(qf * qf, axis=1) / HEAD_DIM)[:, None]).to(q.dtype)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    for start_n in range(0, N_CTX, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        n_mask = offs_n < N_CTX
        kt_ptrs = k_ptr + pid_h * stride_kh + offs_n[None, :] * stride_kn + offs_d[:, None]
        kt = tl.load(kt_ptrs, mask=n_mask[None, :], other=0.0)  # K tile, transposed
        if NORMALIZE:
            ktf = kt.to(tl.float32)
            kt = (ktf / tl.sqrt(tl.sum(ktf * ktf, axis=0) / HEAD_DIM)[None, :]).to(kt.dtype)
        s = tl.dot(q, kt)
        s = tl.where(n_mask[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v_ptrs = v_ptr + pid_h * stride_vh + offs_n[:, None] * stride_vn + offs_d[None, :]
        v = tl.load(v_ptrs, mask=n_mask[:, None], other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    acc = acc / l_i[:, None]
    o_ptrs = o_ptr + pid_h * stride_oh + offs_m[:, None] * stride_om + offs_d[None, :]
    tl.store(o_ptrs, acc.to(o_ptr.dtype.element_ty), mask=offs_m[:, None] < M)


# --- skinny matmuls: RMSNorm + MatMul, GatedMLP, LoRA -------------------------------------------

SKINNY_CONFIGS = [
    triton.Config({"BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=s)
    for bn, bk, w, s in [(32, 128, 4, 4), (64, 128, 4, 4), (32, 256, 4, 3), (64, 256, 4, 3),
                         (128, 64, 4, 4), (128, 128, 8, 3)]
]
SKINNY_KEY = ["M", "N", "K"]


@triton.autotune(configs=SKINNY_CONFIGS, key=SKINNY_KEY)
@triton.jit
def rmsnorm_matmul_kernel(
    x_ptr, w_ptr, o_ptr,
    M, N, K,
    stride_xm, stride_wk, stride_om,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """O = rms_norm(X) W: accumulate X W and the sum of squares of X, divide at the end."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    x_ptrs = x_ptr + offs_m[:, None] * stride_xm + offs_k[None, :]
    w_ptrs = w_ptr + offs_k[:, None] * stride_wk + offs_n[None, :]
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    sum_sq = tl.zeros([BLOCK_M], dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        k_mask = offs_k < K - k * BLOCK_K
        x = tl.load(x_ptrs, mask=(offs_m[:, None] < M) & k_mask[None, :], other=0.0)
        w = tl.load(w_ptrs, mask=k_mask[:, None] & (offs_n[None, :] < N), other=0.0)
        xf = x.to(tl.float32)
        sum_sq += tl.sum(xf * xf, axis=1)
        acc = tl.dot(x, w, acc)
        x_ptrs += BLOCK_K
        w_ptrs += BLOCK_K * stride_wk
    acc = acc / tl.sqrt(sum_sq / K)[:, None]
    o_ptrs = o_ptr + offs_m[:, None] * stride_om + offs_n[None, :]
    tl.store(o_ptrs, acc.to(o_ptr.dtype.element_ty),
             mask=(offs_m[:, None] < M) & (offs_n[None, :] < N))


@triton.autotune(configs=SKINNY_CONFIGS, key=SKINNY_KEY)
@triton.jit
def gatedmlp_kernel(
    x_ptr, w1_ptr, w2_ptr, o_ptr,
    M, N, K,
    stride_xm, stride_w1k, stride_w2k, stride_om,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """O = silu(X W1) * (X W2): both products in one loop, the gate after it."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    x_ptrs = x_ptr + offs_m[:, None] * stride_xm + offs_k[None, :]
    w1_ptrs = w1_ptr + offs_k[:, None] * stride_w1k + offs_n[None, :]
    w2_ptrs = w2_ptr + offs_k[:, None] * stride_w2k + offs_n[None, :]
    acc1 = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    acc2 = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        k_mask = offs_k < K - k * BLOCK_K
        w_mask = k_mask[:, None] & (offs_n[None, :] < N)
        x = tl.load(x_ptrs, mask=(offs_m[:, None] < M) & k_mask[None, :], other=0.0)
        w1 = tl.load(w1_ptrs, mask=w_mask, other=0.0)
        w2 = tl.load(w2_ptrs, mask=w_mask, other=0.0)
        acc1 = tl.dot(x, w1, acc1)
        acc2 = tl.dot(x, w2, acc2)
        x_ptrs += BLOCK_K
        w1_ptrs += BLOCK_K * stride_w1k
        w2_ptrs += BLOCK_K * stride_w2k
    out = acc1 * tl.sigmoid(acc1) * acc2
    o_ptrs = o_ptr + offs_m[:, None] * stride_om + offs_n[None, :]
    tl.store(o_ptrs, out.to(o_ptr.dtype.element_ty),
             mask=(offs_m[:, None] < M) & (offs_n[None, :] < N))


@triton.autotune(configs=SKINNY_CONFIGS, key=SKINNY_KEY)
@triton.jit
def lora_kernel(
    x_ptr, w_ptr, a_ptr, b_ptr, o_ptr,
    M, N, K, R,
    stride_xm, stride_wk, stride_ak, stride_br, stride_om,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_R: tl.constexpr,
):
    """O = X W + (X A) B: X W and X A in one loop over K, then the rank-R product."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    offs_r = tl.arange(0, BLOCK_R)
    x_ptrs = x_ptr + offs_m[:, None] * stride_xm + offs_k[None, :]
    w_ptrs = w_ptr + offs_k[:, None] * stride_wk + offs_n[None, :]
    a_ptrs = a_ptr + offs_k[:, None] * stride_ak + offs_r[None, :]
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    xa = tl.zeros([BLOCK_M, BLOCK_R], dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        k_mask = offs_k < K - k * BLOCK_K
        x = tl.load(x_ptrs, mask=(offs_m[:, None] < M) & k_mask[None, :], other=0.0)
        w = tl.load(w_ptrs, mask=k_mask[:, None] & (offs_n[None, :] < N), other=0.0)
        a = tl.load(a_ptrs, mask=k_mask[:, None] & (offs_r[None, :] < R), other=0.0)
        acc = tl.dot(x, w, acc)
        xa = tl.dot(x, a, xa)
        x_ptrs += BLOCK_K
        w_ptrs += BLOCK_K * stride_wk
        a_ptrs += BLOCK_K * stride_ak
    b_ptrs = b_ptr + offs_r[:, None] * stride_br + offs_n[None, :]
    b = tl.load(b_ptrs, mask=(offs_r[:, None] < R) & (offs_n[None, :] < N), other=0.0)
    acc = tl.dot(xa.to(b.dtype), b, acc)
    o_ptrs = o_ptr + offs_m[:, None] * stride_om + offs_n[None, :]
    tl.store(o_ptrs, acc.to(o_ptr.dtype.element_ty),
             mask=(offs_m[:, None] < M) & (offs_n[None, :] < N))


# --- nTrans ------------------------------------------------------------------------------------


@triton.jit
def ntrans_kernel(
    h_ptr, x_ptr, alpha_ptr, o_ptr,
    N,
    stride_hm, stride_xm, stride_am, stride_om,
    BLOCK_N: tl.constexpr,
):
    """O = rms_norm(X + alpha * (rms_norm(H) - X)) for one row."""
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK_N)
    mask = offs < N
    h = tl.load(h_ptr + row * stride_hm + offs, mask=mask, other=0.0).to(tl.float32)
    x = tl.load(x_ptr + row * stride_xm + offs, mask=mask, other=0.0).to(tl.float32)
    alpha = tl.load(alpha_ptr + row * stride_am + offs, mask=mask, other=0.0).to(tl.float32)
    h_norm = h / tl.sqrt(tl.sum(h * h, axis=0) / N)
    y = x + alpha * (h_norm - x)  # masked lanes stay 0
    out = y / tl.sqrt(tl.sum(y * y, axis=0) / N)
    tl.store(o_ptr + row * stride_om + offs, out.to(o_ptr.dtype.element_ty), mask=mask)


def _ntrans_config(n: int) -> triton.Config:
    block = triton.next_power_of_2(n)
    return triton.Config({"BLOCK_N": block}, num_warps=min(max(block // 256, 1), 8))


# --- launchers ---------------------------------------------------------------------------------


def _block_rows(m: int) -> int:
    """One row tile covers all rows (M is small here), padded to tl.dot's minimum of 16."""
    return max(16, triton.next_power_of_2(m))


def _jit_function(kernel):
    """The ``@triton.jit`` function under an autotuner (or the kernel itself)."""
    return kernel.fn if isinstance(kernel, triton.runtime.Autotuner) else kernel


def _launch(kernel, grid, args: tuple, fixed: dict, config: triton.Config | None):
    """Autotuned launch, or, with ``config``, the bare kernel with that config."""
    if config is None:
        kernel[grid](*args, **fixed)
    else:
        _jit_function(kernel)[grid](*args, **fixed, **config.all_kwargs())


def attention(q, k, v, normalize: bool = False, config: triton.Config | None = None):
    heads, m, d = q.shape
    n_ctx = k.shape[1]
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    o = torch.empty_like(q)
    grid = lambda meta: (triton.cdiv(m, meta["BLOCK_M"]), heads)  # noqa: E731
    _launch(attention_kernel, grid,
            (q, k, v, o, m, n_ctx, q.stride(0), q.stride(1), k.stride(0), k.stride(1),
             v.stride(0), v.stride(1), o.stride(0), o.stride(1)),
            {"HEAD_DIM": d, "NORMALIZE": normalize}, config)
    return o


def _skinny_grid(m: int, n: int):
    return lambda meta: (triton.cdiv(m, meta["BLOCK_M"]), triton.cdiv(n, meta["BLOCK_N"]))


def rmsnorm(x, w, config: triton.Config | None = None):
    (m, k), n = x.shape, w.shape[1]
    x, w = x.contiguous(), w.contiguous()
    o = torch.empty((m, n), dtype=x.dtype, device=x.device)
    _launch(rmsnorm_matmul_kernel, _skinny_grid(m, n),
            (x, w, o, m, n, k, x.stride(0), w.stride(0), o.stride(0)),
            {"BLOCK_M": _block_rows(m)}, config)
    return o


def gatedmlp(x, w1, w2, config: triton.Config | None = None):
    (m, k), n = x.shape, w1.shape[1]
    x, w1, w2 = x.contiguous(), w1.contiguous(), w2.contiguous()
    o = torch.empty((m, n), dtype=x.dtype, device=x.device)
    _launch(gatedmlp_kernel, _skinny_grid(m, n),
            (x, w1, w2, o, m, n, k, x.stride(0), w1.stride(0), w2.stride(0), o.stride(0)),
            {"BLOCK_M": _block_rows(m)}, config)
    return o


def lora(x, w, a, b, config: triton.Config | None = None):
    (m, k), n, r = x.shape, w.shape[1], a.shape[1]
    x, w, a, b = x.contiguous(), w.contiguous(), a.contiguous(), b.contiguous()
    o = torch.empty((m, n), dtype=x.dtype, device=x.device)
    _launch(lora_kernel, _skinny_grid(m, n),
            (x, w, a, b, o, m, n, k, r, x.stride(0), w.stride(0), a.stride(0), b.stride(0),
             o.stride(0)),
            {"BLOCK_M": _block_rows(m), "BLOCK_R": max(16, triton.next_power_of_2(r))}, config)
    return o


def ntrans(h, x, alpha, config: triton.Config | None = None):
    m, n = h.shape
    h, x, alpha = h.contiguous(), x.contiguous(), alpha.contiguous()
    o = torch.empty_like(x)
    _launch(ntrans_kernel, (m,),
            (h, x, alpha, o, n, h.stride(0), x.stride(0), alpha.stride(0), o.stride(0)),
            {}, config or _ntrans_config(n))
    return o


LAUNCHERS: dict[str, Callable] = {
    "gqa": attention,
    "qknorm": lambda q, k, v, config=None: attention(q, k, v, True, config),
    "rmsnorm": rmsnorm,
    "lora": lora,
    "gatedmlp": gatedmlp,
    "ntrans": ntrans,
}


# --- ahead-of-time compilation (no GPU needed) ---------------------------------------------------


@dataclass(frozen=True)
class KernelUse:
    """How a case uses its kernel: the constexprs fixed by the shapes and the tile configs."""

    kernel: object  # Autotuner or JITFunction
    fixed: Callable[[dict], dict]
    configs: Callable[[dict], list]


def _rows(shapes: dict) -> int:
    return next(iter(shapes.values()))[0]


KERNELS: dict[str, KernelUse] = {
    "gqa": KernelUse(attention_kernel, lambda s: {"HEAD_DIM": s["Q"][-1], "NORMALIZE": False},
                     lambda s: ATTENTION_CONFIGS),
    "qknorm": KernelUse(attention_kernel, lambda s: {"HEAD_DIM": s["Q"][-1], "NORMALIZE": True},
                        lambda s: ATTENTION_CONFIGS),
    "rmsnorm": KernelUse(rmsnorm_matmul_kernel, lambda s: {"BLOCK_M": _block_rows(_rows(s))},
                         lambda s: SKINNY_CONFIGS),
    "gatedmlp": KernelUse(gatedmlp_kernel, lambda s: {"BLOCK_M": _block_rows(_rows(s))},
                          lambda s: SKINNY_CONFIGS),
    "lora": KernelUse(lora_kernel, lambda s: {
        "BLOCK_M": _block_rows(_rows(s)),
        "BLOCK_R": max(16, triton.next_power_of_2(s["A"][1]))}, lambda s: SKINNY_CONFIGS),
    "ntrans": KernelUse(ntrans_kernel, lambda s: {},
                        lambda s: [_ntrans_config(s["H"][1])]),
}


def aot_compile(case: str, shapes: dict, arch: int = 90, dtype: str = "fp16",
                configs: list | None = None) -> list:
    """Compile the case's kernel for ``cuda:<arch>`` once per tile config (default: all of
    them), without a GPU. Pointers are typed ``*<dtype>``, other runtime arguments ``i32``.
    """
    from triton.backends.compiler import GPUTarget

    use = KERNELS[case]
    fn = _jit_function(use.kernel)
    compiled = []
    for config in use.configs(shapes) if configs is None else configs:
        constexprs = {**use.fixed(shapes), **config.kwargs}
        signature = {}
        for p in fn.params:
            if p.is_constexpr:
                signature[p.name] = "constexpr"
            else:
                signature[p.name] = f"*{dtype}" if p.name.endswith("_ptr") else "i32"
        source = triton.compiler.ASTSource(fn, signature, constexprs)
        options = {"num_warps": config.num_warps, "num_stages": config.num_stages}
        compiled.append(triton.compile(source, target=GPUTarget("cuda", arch, 32),
                                       options=options))
    return compiled


def build(case: str, shapes: dict, device):
    require_cuda(device)
    return LAUNCHERS[case]


BASELINES = (Baseline("triton", "triton", ALL_CASES, build,
                      "hand-written, tutorial quality, triton.autotune over a few tile configs"),)
