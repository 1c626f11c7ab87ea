"""Timing on the GPU: the named timing methods and their results.

Only this layer, ``codegen`` and ``runtime`` touch CUDA; every module here imports torch lazily so
that ``import mirage.profile`` works on a CPU-only machine.
"""

from mirage.profile.timing import METHOD, Timing, time_gpu

__all__ = ["METHOD", "Timing", "time_gpu"]
