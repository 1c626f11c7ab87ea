"""The baseline rows: every one either builds or says why not, and the attention wrappers hand
the libraries our tensors in the layouts they document (checked on the CPU with stand-ins)."""

from __future__ import annotations

import functools
import types

import pytest
import torch
from torch.nn.attention import SDPBackend

from baselines import ALL_CASES, NotAvailable, attention_libs, registry, sdpa
from scripts.harness.cases import CASES, reference, relative_error

ATTENTION_SHAPES = {"Q": (2, 32, 64), "K": (2, 128, 64), "V": (2, 128, 64)}


def test_registry_rows():
    rows = registry()
    assert {"eager", "torch.compile", "sdpa-flash", "sdpa-cudnn", "sdpa-efficient",
            "flashinfer", "flash-attn", "tensorrt", "triton", "taso", "pet"} <= set(rows)
    for name, row in rows.items():
        assert row.name == name and row.family and row.cases <= ALL_CASES


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
@pytest.mark.parametrize("name", ["torch.compile", "sdpa-flash", "sdpa-cudnn", "sdpa-efficient",
                                  "flashinfer", "flash-attn", "liger", "tensorrt", "triton"])
def test_gpu_baselines_say_why_not_on_cpu(name):
    row = registry()[name]
    case = sorted(row.cases)[0]
    with pytest.raises(NotAvailable, match="CUDA"):
        row.build(case, CASES[case].shapes(1), "cpu")


@pytest.mark.parametrize("name", ["taso", "pet"])
def test_unreproducible_baselines_give_the_reason(name):
    with pytest.raises(NotAvailable, match="^not reproducible: .*(TASO|PET)"):
        registry()[name].build("gqa", CASES["gqa"].shapes(1), "cuda")


def attention_inputs(case: str):
    return CASES[case].inputs(ATTENTION_SHAPES, seed=4)


@pytest.mark.parametrize("case", ["gqa", "qknorm"])
def test_sdpa_wrapper_computes_the_program(case):
    """The SDPA call (layout, scale=1.0, QKNorm's norms) with the math backend on the CPU."""
    x = [t.float() for t in attention_inputs(case)]
    out = sdpa._attention(SDPBackend.MATH, case == "qknorm", *x)
    assert relative_error(out, reference(CASES[case], x)) < 1e-5


def _softmax_attention(q, k, v, scale):  # [heads, rows, dim] each
    return torch.softmax(scale * q @ k.transpose(-1, -2), dim=-1) @ v


def fake_flashinfer(strided_ok: bool):
    def single_prefill_with_kv_cache(q, k, v, causal, kv_layout, sm_scale):
        assert kv_layout == "HND" and not causal  # k, v: [heads, kv_len, dim]
        if not strided_ok and not q.is_contiguous():
            raise RuntimeError("q must be contiguous")
        return _softmax_attention(q.transpose(0, 1), k, v, sm_scale).transpose(0, 1)
    return types.SimpleNamespace(single_prefill_with_kv_cache=single_prefill_with_kv_cache)


def fake_flash_attn_func(q, k, v, softmax_scale, causal):  # [batch, seqlen, heads, dim]
    assert not causal
    o = _softmax_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                           softmax_scale)
    return o.transpose(1, 2)


@pytest.mark.parametrize("case", ["gqa", "qknorm"])
@pytest.mark.parametrize("strided_ok", [True, False])
def test_flashinfer_wrapper_layout(case, strided_ok):
    lib = fake_flashinfer(strided_ok)
    x = [t.float() for t in attention_inputs(case)]
    fn = functools.partial(attention_libs._flashinfer_call, lib, not strided_ok,
                           case == "qknorm")
    assert relative_error(fn(*x), reference(CASES[case], x)) < 1e-5


@pytest.mark.parametrize("case", ["gqa", "qknorm"])
def test_flash_attn_wrapper_layout(case):
    x = [t.float() for t in attention_inputs(case)]
    out = attention_libs._flash_attn_call(fake_flash_attn_func, case == "qknorm", *x)
    assert relative_error(out, reference(CASES[case], x)) < 1e-5


def test_flashinfer_build_falls_back_to_a_contiguous_q(monkeypatch):
    monkeypatch.setattr(attention_libs, "require_cuda", lambda device: None)
    monkeypatch.setattr(attention_libs, "_import", lambda name: fake_flashinfer(False))
    fn = attention_libs.build_flashinfer("gqa", ATTENTION_SHAPES, "cpu")
    assert fn.args[1] is True  # contiguous_q
    x = [t.float() for t in attention_inputs("gqa")]
    assert relative_error(fn(*x), reference(CASES["gqa"], x)) < 1e-5


def test_missing_library_is_not_available():
    with pytest.raises(NotAvailable, match="not importable"):
        attention_libs._import("surely_not_a_module_here")


class _FakeLigerRMSNorm:
    """Liger's RMSNorm as its docs state it: x * rsqrt(mean(x^2) + eps) * W (W None: no gain)."""

    @staticmethod
    def apply(x, w, eps, offset, casting_mode):
        assert w is None and eps == 0.0 and casting_mode == "llama"
        return x * torch.rsqrt(x.float().square().mean(-1, keepdim=True) + eps).to(x.dtype)


class _FakeLigerSiLUMul:
    @staticmethod
    def apply(a, b):
        return torch.nn.functional.silu(a) * b


LIGER_SHAPES = {"rmsnorm": {"X": (4, 64), "W": (64, 32)},
                "gatedmlp": {"X": (4, 64), "W1": (64, 32), "W2": (64, 32)},
                "ntrans": {"H": (4, 64), "X": (4, 64), "alpha": (1, 64)}}


@pytest.mark.parametrize("case", sorted(LIGER_SHAPES))
def test_liger_wrapper_computes_the_program(case, monkeypatch):
    """The composition around Liger's kernels (cuBLAS matmuls, torch glue) with stand-ins."""
    from baselines import liger

    monkeypatch.setattr(liger, "require_cuda", lambda device: None)
    monkeypatch.setattr(liger, "_liger_ops", lambda: (_FakeLigerRMSNorm, _FakeLigerSiLUMul))
    shapes = LIGER_SHAPES[case]
    x = [t.float() for t in CASES[case].inputs(shapes, seed=3)]
    out = liger.build(case, shapes, "cpu")(*x)
    assert relative_error(out, reference(CASES[case], x)) < 1e-5


def test_liger_says_why_not_for_other_cases_and_when_missing(monkeypatch):
    from baselines import liger

    monkeypatch.setattr(liger, "require_cuda", lambda device: None)
    monkeypatch.setattr(liger.importlib, "import_module",
                        lambda name: (_ for _ in ()).throw(ImportError("no module")))
    with pytest.raises(NotAvailable, match="liger_kernel not importable"):
        liger.build("rmsnorm", LIGER_SHAPES["rmsnorm"], "cpu")
    monkeypatch.setattr(liger, "_liger_ops", lambda: (_FakeLigerRMSNorm, _FakeLigerSiLUMul))
    with pytest.raises(NotAvailable, match="no kernel for gqa"):
        liger.build("gqa", CASES["gqa"].shapes(1), "cpu")
