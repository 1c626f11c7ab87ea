"""The user-facing builder API."""

from mirage.api.builder import (
    DTensor,
    KNGraph,
    STensor,
    TBGraph,
    bfloat16,
    float16,
    float32,
    new_kernel_graph,
    new_threadblock_graph,
)

__all__ = [
    "DTensor",
    "KNGraph",
    "STensor",
    "TBGraph",
    "bfloat16",
    "float16",
    "float32",
    "new_kernel_graph",
    "new_threadblock_graph",
]
