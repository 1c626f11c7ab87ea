"""Translate FX nodes into kernel-graph builder calls, one node at a time.

``Emitter.emit(node)`` writes the builder ops that compute one FX node (``torch.matmul``, ``@``,
``F.linear``, ``exp``, ``F.silu``, ``x * 0.125``, ``x.sum(-1, keepdim=True)`` …) and raises
``Unsupported`` naming why when it cannot. The builder itself is the judge of what it accepts:
a node is tried, and an op the builder does not have yet (``tanh`` before it lands) or operands
it refuses (mixed ranks, mixed dtypes) make the node unsupported, never wrong. Only the public
builder methods are called.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.fx import Node

DTYPES = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}
IDENTITY = "identity"  # the op name recorded for nodes that are views of their operand


class Unsupported(Exception):
    """The node cannot become builder ops; the message says why."""


def meta_value(node: Node):
    """The example value dynamo (``example_value``) or AOT/export (``val``) recorded."""
    for key in ("example_value", "val"):
        value = node.meta.get(key)
        if value is not None:
            return value
    return node.meta.get("tensor_meta")


def value_type(node: Node) -> tuple[tuple[int, ...], str]:
    """(static shape, builder dtype) of a tensor node the builder can hold, else ``Unsupported``."""
    value = meta_value(node)
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is None:
        raise Unsupported(f"{node.name}: not a tensor with a known shape")
    if not all(type(d) is int for d in shape):
        raise Unsupported(f"{node.name}: dynamic shape {tuple(shape)}")
    if not 1 <= len(shape) <= 4:
        raise Unsupported(f"{node.name}: rank {len(shape)} (the builder takes 1-4)")
    if dtype not in DTYPES:
        raise Unsupported(f"{node.name}: dtype {dtype} (the builder takes fp16/bf16/fp32)")
    return tuple(shape), DTYPES[dtype]


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


class Emitter:
    """Builds one kernel graph from FX nodes. ``env`` maps emitted nodes to builder tensors;
    any other tensor operand becomes a kernel-graph input, recorded in ``inputs`` as
    (FX node, declared shape): a lower-rank operand of a broadcasting op is declared with
    leading 1s (the builder broadcasts equal ranks only) and reshaped, a view, when called."""

    def __init__(self, graph):
        self.g = graph
        self.env: dict[Node, object] = {}
        self.ops: dict[Node, str] = {}  # node -> what it became, for reports
        self.inputs: list[tuple[Node, tuple[int, ...]]] = []
        self._declared: dict[tuple[Node, tuple[int, ...]], object] = {}

    def tensor(self, arg, rank: int | None = None):
        """The builder tensor for FX operand ``arg`` (declaring an input when it is external)."""
        if not isinstance(arg, Node):
            raise Unsupported(f"operand {arg!r:.40} is not a tensor")
        if arg in self.env:
            return self.env[arg]
        shape, dtype = value_type(arg)
        if rank is not None and rank > len(shape):
            shape = (1,) * (rank - len(shape)) + shape
        key = (arg, shape)
        if key not in self._declared:
            name = arg.name if len(shape) == len(value_type(arg)[0]) else f"{arg.name}_r{rank}"
            self._declared[key] = self.g.new_input(dims=shape, dtype=dtype, name=name)
            self.inputs.append(key)
        return self._declared[key]

    def is_input(self, t) -> bool:
        """Whether builder tensor ``t`` is one of the declared kernel-graph inputs."""
        return any(t is d for d in self._declared.values())

    def operand(self, arg, rank: int):
        """A tensor operand of a broadcasting op, or a Python number passed through as is."""
        return float(arg) if _is_number(arg) else self.tensor(arg, rank)

    def internal(self, arg):
        """An operand already computed in this graph (identity ops may not pass inputs out)."""
        if arg not in self.env:
            raise Unsupported("a view or no-op cast of a graph input")
        return self.env[arg]

    def emit(self, node: Node):
        """Translate ``node``; its builder tensor goes to ``env``. Raises ``Unsupported``."""
        rule = rule_for(node)
        if rule is None:
            raise Unsupported(f"no mapping for {describe(node)}")
        out_shape, out_dtype = value_type(node)
        try:
            result = rule(self, node, *node.args, **node.kwargs)
        except Unsupported:
            raise
        except AttributeError as e:  # a builder op that has not landed yet
            raise Unsupported(f"{describe(node)}: builder lacks it ({e})") from None
        except Exception as e:  # noqa: BLE001 - the builder refusing operands: name the rule
            raise Unsupported(f"{describe(node)}: {type(e).__name__}: {e}") from None
        if tuple(result.shape) != out_shape or result.dtype != out_dtype:
            raise Unsupported(f"{describe(node)}: builder gives {result.shape} {result.dtype}, "
                              f"torch {out_shape} {out_dtype}")
        self.env[node] = result
        self.ops.setdefault(node, describe(node))
        return result


def describe(node: Node) -> str:
    """A short name of what the node calls: ``mul``, ``F.linear``, ``.sum``."""
    if node.op == "call_method":
        return f".{node.target}"
    if node.op == "call_function":
        name = getattr(node.target, "__name__", str(node.target))
        return "F." + name if getattr(F, name, None) is node.target else name
    return f"{node.op} {node.target}"


# --- rules: (emitter, node, *args, **kwargs) -> builder tensor ---------------------------------


def _rank(node: Node) -> int:
    return len(value_type(node)[0])


def _binary(name: str) -> Callable:
    def rule(em, node, a, b, *, alpha=None, rounding_mode=None, out=None):
        if alpha not in (None, 1) or rounding_mode is not None or out is not None:
            raise Unsupported(f"{name} with alpha/rounding_mode/out")
        if name == "mul" and isinstance(a, Node) and a is b:
            em.ops[node] = "square"
            return em.g.square(em.tensor(a))  # x * x: one op the search knows as square
        rank = _rank(node)
        return getattr(em.g, name)(em.operand(a, rank), em.operand(b, rank))
    return rule


def _unary(method: str) -> Callable:
    def rule(em, node, x, *, inplace=False, out=None):
        if inplace or out is not None:
            raise Unsupported("in-place or out=")
        return getattr(em.g, method)(em.tensor(x))
    return rule


def _rsqrt(em, node, x):
    return em.g.div(1.0, em.g.sqrt(em.tensor(x)))


def _neg(em, node, x):
    return em.g.mul(em.tensor(x), -1.0)


def _pow(em, node, x, exponent):
    t = em.tensor(x)
    forms = {2: lambda: em.g.square(t), 0.5: lambda: em.g.sqrt(t),
             -0.5: lambda: em.g.div(1.0, em.g.sqrt(t)), -1: lambda: em.g.div(1.0, t)}
    if not _is_number(exponent) or exponent not in forms:
        raise Unsupported(f"pow with exponent {exponent!r:.20}")
    return forms[exponent]()


def _one_dim(dim, rank: int) -> int:
    if isinstance(dim, (list, tuple)) and len(dim) == 1:
        dim = dim[0]
    if type(dim) is not int:
        raise Unsupported(f"reduction over dims {dim!r:.30} (one dim only)")
    return dim % rank


def _reduction(kind: str) -> Callable:
    def rule(em, node, x, dim=None, keepdim=False, *, dtype=None):
        if not keepdim or dtype is not None:
            raise Unsupported(f"{kind} without keepdim=True (the builder keeps the dim)")
        t = em.tensor(x)
        d = _one_dim(dim, len(t.shape))
        if kind == "mean" and not hasattr(em.g, "reduce_mean"):
            return em.g.div(em.g.reduce_sum(t, d), float(t.shape[d]))
        return getattr(em.g, {"sum": "reduce_sum", "mean": "reduce_mean",
                              "amax": "reduce_max"}[kind])(t, d)
    return rule


def _transpose(em, node, x, dim0, dim1):
    return em.g.transpose(em.tensor(x), dim0, dim1)


def _t(em, node, x):
    t = em.tensor(x)
    if len(t.shape) != 2:
        raise Unsupported(".t()/.T of a tensor of rank != 2")
    return em.g.transpose(t, 0, 1)


def _getattr(em, node, x, attr):
    if attr == "T":
        return _t(em, node, x)
    if attr == "mT":
        return em.g.transpose(em.tensor(x), -2, -1)
    raise Unsupported(f"attribute .{attr}")


def _matmul(em, node, a, b, *, out=None):
    if out is not None:
        raise Unsupported("matmul with out=")
    rank = _rank(node)
    return em.g.matmul(em.tensor(a, rank), em.tensor(b, rank))


def _linear(em, node, x, weight, bias=None):
    rank = _rank(node)
    w = em.tensor(weight, rank)  # (out, in), declared (1, out, in) under a rank-3 x
    y = em.g.matmul(em.tensor(x), em.g.transpose(w, -2, -1))
    em.ops[node] = "F.linear (transpose, matmul" + (", add)" if bias is not None else ")")
    return y if bias is None else em.g.add(y, em.tensor(bias, rank))


def _gelu(em, node, x, approximate="none"):
    return em.g.gelu(em.tensor(x), approximate=approximate)


def _softmax(em, node, x, dim=None, _stacklevel=3, dtype=None):
    if dtype is not None or dim is None:
        raise Unsupported("softmax with dtype= or without dim")
    t = em.tensor(x)
    d = _one_dim(dim, len(t.shape))
    # A row max only stabilises exp; any per-row value gives the same softmax.
    shifted = em.g.sub(t, em.g.reduce_max(t, d)) if hasattr(em.g, "reduce_max") else t
    e = em.g.exp(shifted)
    return em.g.div(e, em.g.reduce_sum(e, d))


def _rms_norm(em, node, x, normalized_shape, weight=None, eps=None):
    t = em.tensor(x)
    if tuple(normalized_shape) != tuple(t.shape[-1:]):
        raise Unsupported("rms_norm over more than the last dim")
    if eps is None:  # torch's default
        eps = torch.finfo(meta_value(node).dtype).eps
    y = em.g.rms_norm(t, eps=eps)
    return y if weight is None else em.g.mul(y, em.tensor(weight, len(t.shape)))


def _identity(em, node, x, *args, **kwargs):
    """``.contiguous()``, ``.float()``/``.to(dtype)`` that keep dtype and device."""
    src = meta_value(x) if isinstance(x, Node) else None
    out = meta_value(node)
    if src is None or src.dtype != out.dtype or src.device != out.device:
        raise Unsupported(f"{describe(node)} changes the dtype or device (the builder has no "
                          "casts)")
    em.ops[node] = IDENTITY
    return em.internal(x)


def _dropout(em, node, x, p=0.5, training=True, inplace=False):
    if training and p:
        raise Unsupported("dropout in training mode")
    return _identity(em, node, x)


_UNARY = ("exp", "sqrt", "relu", "silu", "tanh", "sigmoid", "square")

FUNCTION_RULES: dict[object, Callable] = {
    operator.add: _binary("add"), torch.add: _binary("add"),
    operator.sub: _binary("sub"), torch.sub: _binary("sub"),
    operator.mul: _binary("mul"), torch.mul: _binary("mul"),
    operator.truediv: _binary("div"), torch.div: _binary("div"),
    operator.matmul: _matmul, torch.matmul: _matmul, torch.mm: _matmul, torch.bmm: _matmul,
    operator.neg: _neg, torch.neg: _neg, torch.rsqrt: _rsqrt,
    operator.pow: _pow, torch.pow: _pow,
    torch.sum: _reduction("sum"), torch.mean: _reduction("mean"), torch.amax: _reduction("amax"),
    torch.transpose: _transpose, torch.t: _t, getattr: _getattr,
    F.linear: _linear, F.gelu: _gelu, F.softmax: _softmax, torch.softmax: _softmax,
    F.dropout: _dropout,
    F.silu: _unary("silu"), F.relu: _unary("relu"), F.sigmoid: _unary("sigmoid"),
    F.tanh: _unary("tanh"),
    **{getattr(torch, name): _unary(name) for name in _UNARY if hasattr(torch, name)},
}
if hasattr(F, "rms_norm"):
    FUNCTION_RULES[F.rms_norm] = _rms_norm

METHOD_RULES: dict[str, Callable] = {
    "add": _binary("add"), "sub": _binary("sub"), "mul": _binary("mul"), "div": _binary("div"),
    "matmul": _matmul, "neg": _neg, "rsqrt": _rsqrt, "pow": _pow,
    "sum": _reduction("sum"), "mean": _reduction("mean"), "amax": _reduction("amax"),
    "transpose": _transpose, "t": _t, "softmax": _softmax,
    "contiguous": _identity, "float": _identity, "to": _identity, "type_as": _identity,
    **{name: _unary(name) for name in _UNARY},
}


def rule_for(node: Node) -> Callable | None:
    """The translation rule of ``node``, or None when none is known."""
    if node.op == "call_method":
        return METHOD_RULES.get(node.target)
    if node.op == "call_function":
        try:
            return FUNCTION_RULES.get(node.target)
        except TypeError:  # an unhashable target
            return None
    return None


def is_compute(node: Node) -> bool:
    return node.op in ("call_function", "call_method", "call_module")


def tensor_bytes(node: Node) -> int:
    value = meta_value(node)
    return math.prod(value.shape) * value.dtype.itemsize if hasattr(value, "dtype") else 0
