"""mirage: a multi-level tensor-program superoptimizer (after the OSDI'25 Mirage paper).

Write a tensor program with the builder (``new_kernel_graph``), write or search µGraphs for it,
and prove them equivalent with ``verify``. See README.md for a walk-through.
"""

from mirage.api import (
    bfloat16,
    float16,
    float32,
    new_kernel_graph,
    new_threadblock_graph,
)
from mirage.errors import InputError, MirageError
from mirage.ir import KernelGraph, MugraphFormatError, default_target, load, save
from mirage.verify import Verdict, verify

__version__ = "0.1.0"

__all__ = [
    "InputError",
    "KernelGraph",
    "MirageError",
    "MugraphFormatError",
    "Verdict",
    "bfloat16",
    "default_target",
    "float16",
    "float32",
    "load",
    "new_kernel_graph",
    "new_threadblock_graph",
    "save",
    "verify",
]
