"""The implementations Mirage is compared against, one module per family.

Every baseline is a row: a name, its family, the cases it applies to and a ``build`` function.
``build(case, shapes, device)`` returns a callable that takes the case's inputs (torch tensors in
the order of ``mirage.workloads.SHAPES[case](b)``) and returns the output tensor. A baseline that
cannot run here (package not importable, backend without a kernel for these shapes, no CUDA)
raises ``NotAvailable`` with the reason; the harness records ``not available: <reason>`` and goes
on. Any other exception is a failure of the baseline and is recorded as an error.

All baselines compute the input programs exactly as ``mirage.workloads`` defines them (softmax
as exp / row-sum without scaling, rms_norm without eps); ``baselines.eager`` holds those
definitions in torch ops and the harness's fp32 reference reuses them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

ATTENTION_CASES = frozenset({"gqa", "qknorm"})
ALL_CASES = frozenset({"gqa", "qknorm", "rmsnorm", "lora", "gatedmlp", "ntrans"})


class NotAvailable(Exception):
    """The baseline cannot run on this machine; ``str(e)`` is the reason."""


@dataclass(frozen=True)
class Baseline:
    """One baseline: ``build(case, shapes, device) -> fn(*inputs) -> output``."""

    name: str
    family: str
    cases: frozenset[str]
    build: Callable
    note: str = ""  # how it is configured, stored with its records


def _registry() -> dict[str, Baseline]:
    from baselines import (
        attention_libs,
        compiled,
        eager,
        liger,
        sdpa,
        tensorrt_baseline,
        triton_kernels,
        unreproducible,
    )

    rows: list[Baseline] = []
    for module in (eager, compiled, sdpa, attention_libs, liger, tensorrt_baseline,
                   triton_kernels, unreproducible):
        rows.extend(module.BASELINES)
    names = [r.name for r in rows]
    if len(set(names)) != len(names):
        raise RuntimeError(f"duplicate baseline names: {names}")
    return {r.name: r for r in rows}


_BASELINES: dict[str, Baseline] | None = None


def registry() -> dict[str, Baseline]:
    """All baseline rows by name (modules are imported on first use)."""
    global _BASELINES
    if _BASELINES is None:
        _BASELINES = _registry()
    return _BASELINES


def require_cuda(device) -> None:
    """Raise ``NotAvailable`` unless ``device`` is a CUDA device."""
    import torch

    if torch.device(device).type != "cuda":
        raise NotAvailable("needs a CUDA device")


__all__ = ["ALL_CASES", "ATTENTION_CASES", "Baseline", "NotAvailable", "registry", "require_cuda"]
