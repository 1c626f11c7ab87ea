"""The six paper workloads as input programs, at the canonical shapes of PAPER.md.

Each builder takes a dict of input shapes (``SHAPES[name](b)`` gives the canonical ones; tests
pass smaller ones) and returns the program as a ``KernelGraph`` whose inputs are in dict order.
``program(name, b)`` builds the canonical program.
"""

from __future__ import annotations

from collections.abc import Callable

from mirage.api import KNGraph, new_kernel_graph
from mirage.ir import KernelGraph

HEAD_DIM = 64
KV_LEN = 4096
QUERY_ROWS = 256  # 8 query heads per KV group x 32 query tokens
KV_HEADS_PER_GPU = 2


def attention_shapes(b: int) -> dict[str, tuple[int, ...]]:
    heads = KV_HEADS_PER_GPU * b
    return {
        "Q": (heads, QUERY_ROWS, HEAD_DIM),
        "K": (heads, KV_LEN, HEAD_DIM),
        "V": (heads, KV_LEN, HEAD_DIM),
    }


SHAPES: dict[str, Callable[[int], dict[str, tuple[int, ...]]]] = {
    "gqa": attention_shapes,
    "qknorm": attention_shapes,
    "rmsnorm": lambda b: {"X": (2 * b, 4096), "W": (4096, 6144)},
    "lora": lambda b: {"X": (b, 256), "W": (256, 4096), "A": (256, 16), "B": (16, 4096)},
    "gatedmlp": lambda b: {"X": (b, 4096), "W1": (4096, 4096), "W2": (4096, 4096)},
    "ntrans": lambda b: {"H": (b, 4096), "X": (b, 4096), "alpha": (b, 4096)},
}


def inputs_of(g: KNGraph, shapes: dict, dtype: str) -> list:
    return [g.new_input(shape, dtype, key) for key, shape in shapes.items()]


def softmax_attention(g: KNGraph, q, k, v):
    """softmax(q k^T) v with softmax as exp / row-sum: no scaling, no max subtraction."""
    e = g.exp(g.matmul(q, g.transpose(k, 1, 2)))
    return g.matmul(g.div(e, g.reduce_sum(e, 2)), v)


def gqa(shapes: dict, dtype: str = "fp16") -> KernelGraph:
    g = new_kernel_graph()
    q, k, v = inputs_of(g, shapes, dtype)
    g.mark_output(softmax_attention(g, q, k, v))
    return g.kernel_graph()


def qknorm(shapes: dict, dtype: str = "fp16") -> KernelGraph:
    g = new_kernel_graph()
    q, k, v = inputs_of(g, shapes, dtype)
    g.mark_output(softmax_attention(g, g.rms_norm(q), g.rms_norm(k), v))
    return g.kernel_graph()


def rmsnorm(shapes: dict, dtype: str = "fp16") -> KernelGraph:
    g = new_kernel_graph()
    x, w = inputs_of(g, shapes, dtype)
    g.mark_output(g.matmul(g.rms_norm(x), w))
    return g.kernel_graph()


def lora(shapes: dict, dtype: str = "fp16") -> KernelGraph:
    g = new_kernel_graph()
    x, w, a, bb = inputs_of(g, shapes, dtype)
    g.mark_output(g.add(g.matmul(x, w), g.matmul(g.matmul(x, a), bb)))
    return g.kernel_graph()


def gatedmlp(shapes: dict, dtype: str = "fp16") -> KernelGraph:
    g = new_kernel_graph()
    x, w1, w2 = inputs_of(g, shapes, dtype)
    g.mark_output(g.mul(g.silu(g.matmul(x, w1)), g.matmul(x, w2)))
    return g.kernel_graph()


def ntrans(shapes: dict, dtype: str = "fp16") -> KernelGraph:
    g = new_kernel_graph()
    h, x, alpha = inputs_of(g, shapes, dtype)
    g.mark_output(g.rms_norm(g.add(x, g.mul(alpha, g.sub(g.rms_norm(h), x)))))
    return g.kernel_graph()


PROGRAMS: dict[str, Callable[..., KernelGraph]] = {
    "gqa": gqa,
    "qknorm": qknorm,
    "rmsnorm": rmsnorm,
    "lora": lora,
    "gatedmlp": gatedmlp,
    "ntrans": ntrans,
}


def program(name: str, b: int, dtype: str = "fp16") -> KernelGraph:
    """The canonical input program of workload ``name`` at batch size ``b``."""
    return PROGRAMS[name](SHAPES[name](b), dtype)
