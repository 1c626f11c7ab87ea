"""The Figure 7 benchmarks as data: one row per case.

A row names the workload in ``mirage.workloads`` (input program and canonical shapes per batch
size come from there, so every implementation runs on the same shapes), the dtype, the
correctness tolerance, how each input is drawn, the baselines that apply and the batch sizes at
which the case is launch-bound (the checker widens its bands there). Adding a case is one row.

Correctness: an implementation's output on random inputs is compared with the fp32 reference (the
eager definition run on fp32 copies of the same inputs, TF32 off) by the max-norm relative error
``max|out - ref| / max|ref|``; NaN, inf or a wrong shape count as infinite error.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import torch

from mirage.ir import KernelGraph
from mirage.workloads import PROGRAMS, SHAPES

BATCHES_A100 = (1, 8)
BATCHES_HOPPER = (1, 8, 16)
TORCH_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass(frozen=True)
class Init:
    """How one input is drawn: N(0, std^2), or U(low, high) when ``uniform`` is set.

    ``row_scale`` multiplies each row (all but the last dim) by a factor drawn from U(lo, hi), so
    a kernel that skips a row normalization is caught. ``energy`` concentrates a row in one half
    of the last dim ("first" or "second"), leaking ``LEAK`` into the other half: see QKNorm.
    """

    std: float = 1.0
    uniform: tuple[float, float] | None = None
    row_scale: tuple[float, float] | None = None
    energy: str | None = None

    LEAK = 1 / 16

    def draw(self, shape: tuple[int, ...], gen: torch.Generator, device) -> torch.Tensor:
        if self.uniform is not None:
            lo, hi = self.uniform
            x = lo + (hi - lo) * torch.rand(shape, generator=gen, device=device)
        else:
            x = self.std * torch.randn(shape, generator=gen, device=device)
        if self.energy is not None:
            half = shape[-1] // 2
            weight = torch.full((shape[-1],), self.LEAK, device=device)
            weight[slice(None, half) if self.energy == "first" else slice(half, None)] = 1.0
            x = x * weight
        if self.row_scale is not None:
            lo, hi = self.row_scale
            rows = lo + (hi - lo) * torch.rand((*shape[:-1], 1), generator=gen, device=device)
            x = x * rows
        return x


ATTENTION = ("sdpa-flash", "sdpa-cudnn", "sdpa-efficient", "flashinfer", "flash-attn")
COMMON = ("eager", "torch.compile", "liger", "triton", "tensorrt", "taso", "pet")


@dataclass(frozen=True)
class Case:
    """One benchmark row. ``shapes(b)`` and ``program(b)`` come from ``mirage.workloads``."""

    name: str
    title: str
    inits: dict[str, Init]
    baselines: tuple[str, ...]
    tolerance: float = 1e-2
    dtype: str = "fp16"
    launch_bound: frozenset[int] = field(default_factory=frozenset)
    note: str = ""

    def shapes(self, b: int) -> dict[str, tuple[int, ...]]:
        return SHAPES[self.name](b)

    def program(self, b: int, shapes: dict | None = None) -> KernelGraph:
        return PROGRAMS[self.name](shapes or self.shapes(b), self.dtype)

    def inputs(self, shapes: dict, seed: int, device="cpu") -> list[torch.Tensor]:
        """Fresh random inputs (in program order) for ``shapes``, reproducible from ``seed``."""
        gen = torch.Generator(device=device).manual_seed(seed)
        dtype = TORCH_DTYPES[self.dtype]
        if list(shapes) != list(self.inits):
            raise ValueError(f"{self.name}: inputs {list(shapes)} != {list(self.inits)}")
        return [self.inits[k].draw(s, gen, device).to(dtype) for k, s in shapes.items()]

    def input_bytes(self, shapes: dict) -> int:
        size = torch.empty((), dtype=TORCH_DTYPES[self.dtype]).element_size()
        return sum(math.prod(s) * size for s in shapes.values())


# Attention scores q.k over a head dim of 64 have std 64 * std_q * std_k; 64 ** -0.25 per input
# keeps them near N(0, 1), so exp of the unscaled, unshifted scores stays far from fp16 overflow.
QK_STD = 64 ** -0.25

CASES: dict[str, Case] = {c.name: c for c in (
    Case("gqa", "GQA",
         {"Q": Init(QK_STD), "K": Init(QK_STD), "V": Init()},
         COMMON + ATTENTION, tolerance=1e-2, launch_bound=frozenset({1})),
    # After rms_norm every row has norm 8, so random Q and K would give scores of std 8 and
    # exp would overflow fp16. Q lives in the first half of the head dim and K in the second
    # (each leaking 1/16 into the other half), which keeps the scores near N(0, 1).
    Case("qknorm", "QKNorm",
         {"Q": Init(energy="first", row_scale=(0.5, 2.0)),
          "K": Init(energy="second", row_scale=(0.5, 2.0)), "V": Init()},
         COMMON + ATTENTION, tolerance=1e-2, launch_bound=frozenset({1})),
    Case("rmsnorm", "RMSNorm",
         {"X": Init(row_scale=(0.5, 2.0)), "W": Init(4096 ** -0.5)},
         COMMON, tolerance=1e-2),
    Case("lora", "LoRA",
         {"X": Init(), "W": Init(256 ** -0.5), "A": Init(256 ** -0.5), "B": Init(16 ** -0.5)},
         COMMON, tolerance=1e-2, launch_bound=frozenset(BATCHES_HOPPER)),
    Case("gatedmlp", "GatedMLP",
         {"X": Init(), "W1": Init(4096 ** -0.5), "W2": Init(4096 ** -0.5)},
         COMMON, tolerance=1e-2),
    Case("ntrans", "nTrans",
         {"H": Init(row_scale=(0.5, 2.0)), "X": Init(row_scale=(0.5, 2.0)),
          "alpha": Init(uniform=(0.0, 1.0))},
         COMMON, tolerance=1e-2, launch_bound=frozenset(BATCHES_HOPPER)),
)}

# Quirks of the upstream artifact (PAPER.md) that this harness does not copy; the report lists them.
UPSTREAM_QUIRKS = (
    "RMSNorm: upstream's graph declares W 4096x6144 but its script feeds 4096x4096; every "
    "implementation here uses 4096x6144.",
    "LoRA and GatedMLP: upstream's Mirage graphs ignore the batch size (16 and 8 rows) while its "
    "baselines use it; here every implementation runs on the same b rows.",
    "QKNorm: upstream normalizes Q and V instead of Q and K, and all 190 of its saved uGraphs "
    "compute a wrong result; here Q and K are normalized and every output is checked.",
    "GQA: the paper says 8K context, upstream's code uses 4096; we use 4096 (as the code).",
    "Timing: upstream ran PyTorch eagerly with a synchronize per iteration, timed TensorRT by wall "
    "clock, Triton by do_bench and TASO by its own cost model; here every implementation is timed "
    "by one method (CUDA-graph replay, events, median).",
    "H100: upstream's saved uGraphs give wrong output on H100 (upstream issue 658); here every "
    "candidate is checked against the fp32 reference before it is timed.",
)


@contextlib.contextmanager
def fp32_matmuls():
    """True fp32 matmuls (no TF32) for the reference, restoring the previous settings."""
    cuda, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = (cuda.allow_tf32, cudnn.allow_tf32)
    cuda.allow_tf32 = cudnn.allow_tf32 = False
    try:
        yield
    finally:
        cuda.allow_tf32, cudnn.allow_tf32 = saved


def reference(case: Case, inputs: list[torch.Tensor]) -> torch.Tensor:
    """The program evaluated in fp32 on fp32 copies of ``inputs``."""
    from baselines.eager import DEFINITIONS

    with torch.no_grad(), fp32_matmuls():
        return DEFINITIONS[case.name](*[x.float() for x in inputs])


def single_output(result) -> torch.Tensor:
    """An implementation's result as one tensor (runtimes return a list of outputs)."""
    if isinstance(result, (list, tuple)):
        if len(result) != 1:
            raise ValueError(f"expected one output, got {len(result)}")
        result = result[0]
    if not isinstance(result, torch.Tensor):
        raise TypeError(f"expected a tensor, got {type(result).__name__}")
    return result


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """max|out - ref| / max|ref|; infinite for a wrong shape or a non-finite value."""
    if tuple(out.shape) != tuple(ref.shape):
        return math.inf
    out = out.detach().float()
    if not bool(torch.isfinite(out).all()):
        return math.inf
    scale = float(ref.abs().max())
    return float((out - ref).abs().max()) / (scale if scale > 0 else 1.0)


def select(names: str | None, available: dict) -> list:
    """Rows picked by a comma list (None: all), in table order; unknown names raise."""
    if not names:
        return list(available.values())
    picked = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in picked if n not in available]
    if unknown:
        raise ValueError(f"unknown: {', '.join(unknown)} (known: {', '.join(available)})")
    return [available[n] for n in available if n in picked]

