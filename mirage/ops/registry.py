"""The operator registry: one record per operator, holding every concern of it.

Each ``OpRecord`` says where an op may appear (kernel / block / thread level), how many operands
it takes, its shape rule, its meaning under the three semantics (float on numpy arrays, finite
field for the verifier, abstract expression for pruning), its Triton emitter and a FLOP estimate.
Adding an operator means adding one record here; ``tests/test_ops.py`` checks every record is
complete and ``tests/test_generality.py`` runs every record through every layer. The search and
the codegen read properties (``Prop``), never op names: an ``ATOM`` op is tried where the target
applies its function, a ``SCALAR`` op with the target's numbers, a reduction's ``pad`` fills
padded lanes.

Graph-defined kernels (``customized``) are not rows: their meaning is their block graph, which the
semantics walker evaluates. Block inputs, accumulators and outputs are rows: the walker does the
tiling and the looping, the rows say what happens to each tile.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, auto
from typing import Any

import numpy as np

from mirage.errors import InputError
from mirage.ops import field as ff
from mirage.ops.terms import CONST, Term, app, const, total

Shape = tuple[int, ...]


class ShapeError(InputError):
    """An operator was given operands whose shapes or attributes it cannot accept."""


class Level(Enum):
    KERNEL = auto()
    BLOCK = auto()
    THREAD = auto()


class Prop(Enum):
    ELEMENTWISE = auto()
    COMMUTATIVE = auto()
    REDUCTION = auto()
    VIEW = auto()  # no data movement of its own (transpose)
    LAX = auto()  # inside the paper's LAX fragment: exact finite-field meaning
    RANDOM_FUNCTION = auto()  # outside LAX: modelled as a shared random function
    ACCUMULATOR = auto()  # block-level for-loop accumulator
    IO = auto()  # input / output placement
    ATOM = auto()  # abstract expression: an opaque application headed by the op's name
    NORM = auto()  # reduces over the last dim and keeps the shape (rms_norm)
    SCALAR = auto()  # carries a Python number as its ``SCALAR_ATTRS`` (x * 0.125, 1.0 - x)


@dataclass(frozen=True)
class Finish:
    """What an accumulator does once after the loop, given the number of reduced elements ``n``."""

    float_fn: Callable[[np.ndarray, int], np.ndarray]
    ff_fn: Callable[[ff.Field, ff.FFValue, int], ff.FFValue]
    expr_fn: Callable[[Term, int], Term]
    emit: Callable[[str, int], str]


@dataclass(frozen=True)
class OpRecord:
    """Every concern of one operator. ``attrs`` names the integer attributes the op requires
    (a Python number travels as ``SCALAR_ATTRS``); ``pad`` is what padded tile lanes must hold
    for the op's reduction to ignore them (-inf for a max)."""

    name: str
    levels: frozenset[Level]
    arity: int
    props: frozenset[Prop]
    attrs: tuple[str, ...]
    shape: Callable[[list[Shape], dict], Shape]
    float_fn: Callable[..., np.ndarray]  # (arrays..., attrs)
    ff_fn: Callable[..., ff.FFValue]  # (field, values..., attrs)
    expr_fn: Callable[[list[Term], dict, list[Shape]], Term]
    emit: Callable[[list[str], dict, list[Shape]], str]  # Triton expression over operand names
    flops: Callable[[list[Shape], Shape], int]
    finish: Finish | None = None  # accumulators only
    # Kernel level on torch tensors: (out, *tensors, attrs) -> result, written into the
    # preallocated ``out`` where the op has one (views return a view and get ``out=None``).
    torch_fn: Callable[..., Any] | None = None
    # What padded lanes of a tile must hold so a reduction ignores them (the op's identity).
    pad: float = 0.0

    def has(self, prop: Prop) -> bool:
        return prop in self.props


# --- shape rules -------------------------------------------------------------------------------


def same_shape(shapes: list[Shape], attrs: dict) -> Shape:
    return shapes[0]


def broadcast_shape(shapes: list[Shape], attrs: dict) -> Shape:
    a, b = shapes
    if len(a) != len(b):
        raise ShapeError(f"operands of different rank: {a} and {b}")
    out = []
    for x, y in zip(a, b, strict=True):
        if x != y and 1 not in (x, y):
            raise ShapeError(f"shapes {a} and {b} do not broadcast")
        out.append(max(x, y))
    return tuple(out)


def matmul_shape(shapes: list[Shape], attrs: dict) -> Shape:
    a, b = shapes
    if len(a) < 2 or len(a) != len(b):
        raise ShapeError(f"matmul needs operands of equal rank >= 2, got {a} and {b}")
    if a[:-2] != b[:-2]:
        raise ShapeError(f"matmul batch dims differ: {a} and {b}")
    if a[-1] != b[-2]:
        raise ShapeError(f"matmul contraction mismatch: {a} @ {b}")
    return (*a[:-1], b[-1])


def _dim(shape: Shape, dim: int) -> int:
    if not -len(shape) <= dim < len(shape):
        raise ShapeError(f"dim {dim} out of range for shape {shape}")
    return dim % len(shape)


def reduce_shape(shapes: list[Shape], attrs: dict) -> Shape:
    (a,) = shapes
    d = _dim(a, attrs["dim"])
    return (*a[:d], 1, *a[d + 1 :])


def last_reduced_shape(shapes: list[Shape], attrs: dict) -> Shape:
    return (*shapes[0][:-1], 1)


def transpose_shape(shapes: list[Shape], attrs: dict) -> Shape:
    (a,) = shapes
    d0, d1 = _dim(a, attrs["dim0"]), _dim(a, attrs["dim1"])
    out = list(a)
    out[d0], out[d1] = out[d1], out[d0]
    return tuple(out)


# --- float helpers -----------------------------------------------------------------------------


def _silu(x):
    return x / (1.0 + np.exp(-x))


def _gelu(x):
    # tanh approximation (torch: gelu(x, approximate="tanh")); one formula for every backend.
    c = np.asarray(math.sqrt(2.0 / math.pi), dtype=x.dtype)
    return 0.5 * x * (1.0 + np.tanh(c * (x + 0.044715 * x * x * x)))


_ERF = np.frompyfunc(math.erf, 1, 1)


def _gelu_erf(x):
    # exact GELU (torch's default, approximate="none"): x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))
    return 0.5 * x * (1.0 + _ERF(x * (1.0 / math.sqrt(2.0))).astype(x.dtype))


def _sigmoid(x):
    return np.exp(-np.logaddexp(0.0, -x))  # 1 / (1 + e^-x) without overflow


def _transpose(x, attrs):
    return np.swapaxes(x, attrs["dim0"], attrs["dim1"])


def _ff_rms_norm(f: ff.Field, x: ff.FFValue, attrs) -> ff.FFValue:
    mean_sq = f.scale(f.reduce_sum(f.mul(x, x), -1), 1, x.shape[-1])
    if has_scalar(attrs):  # rms_norm_eps: mean(x^2) + eps
        mean_sq = f.add(mean_sq, f.constant(*scalar_ratio(attrs)))
    return f.div(x, f.random_function("sqrt", mean_sq))


# --- Triton helpers (codegen passes squeezed shapes and the graph's dtype in attrs) -------------


def _dot_precision(attrs: dict) -> str:
    # fp32 operands would default to tf32 on tensor cores; the float semantics want fp32.
    return ', input_precision="ieee"' if attrs.get("dtype") == "fp32" else ""


def _emit_transpose(x: str, attrs: dict, rank: int) -> str:
    if rank == 2:
        return f"tl.trans({x})"
    perm = list(range(rank))
    d0, d1 = attrs["dim0"] % rank, attrs["dim1"] % rank
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return f"tl.permute({x}, {tuple(perm)})"


# --- torch meanings (kernel level; torch is imported on first use) ------------------------------


def _torch():
    import torch

    return torch


def _torch_unary(name: str):
    # exp, square, sqrt: torch has the same name with an ``out=``
    return lambda out, x, attrs: getattr(_torch(), name)(x, out=out)


def _torch_binary(name: str):
    return lambda out, x, y, attrs: getattr(_torch(), name)(x, y, out=out)


def _torch_rms_norm(out, x, attrs):
    xf = x.float()
    eps = scalar_value(attrs) if has_scalar(attrs) else 0.0
    return out.copy_(xf * _torch().rsqrt(xf.square().mean(-1, keepdim=True) + eps))


# --- FLOP estimates ----------------------------------------------------------------------------


def _numel(shape: Shape) -> int:
    return math.prod(shape)


def elementwise_flops(shapes: list[Shape], out: Shape) -> int:
    return _numel(out)


def matmul_flops(shapes: list[Shape], out: Shape) -> int:
    return 2 * _numel(out) * shapes[0][-1]


def input_flops(shapes: list[Shape], out: Shape) -> int:
    return _numel(shapes[0]) if shapes else 0


def no_flops(shapes: list[Shape], out: Shape) -> int:
    return 0


# --- the records -------------------------------------------------------------------------------

ALL = frozenset({Level.KERNEL, Level.BLOCK, Level.THREAD})
KB = frozenset({Level.KERNEL, Level.BLOCK})
BLOCK = frozenset({Level.BLOCK})
KERNEL = frozenset({Level.KERNEL})

REGISTRY: dict[str, OpRecord] = {}


def _register(rec: OpRecord) -> OpRecord:
    assert rec.name not in REGISTRY, rec.name
    REGISTRY[rec.name] = rec
    return rec


def _identity_io(name: str, levels: frozenset[Level], expr_fn) -> OpRecord:
    return OpRecord(
        name=name,
        levels=levels,
        arity=1,
        props=frozenset({Prop.IO, Prop.LAX}),
        attrs=(),
        shape=same_shape,
        float_fn=lambda x, attrs: x,
        ff_fn=lambda f, x, attrs: x,
        expr_fn=expr_fn,
        emit=lambda a, attrs, shapes: a[0],
        flops=no_flops,
    )


def _unary_lax(name, float_fn, ff_fn, expr_fn, emit, torch_fn=None, props=()) -> OpRecord:
    return OpRecord(
        name=name,
        levels=ALL,
        arity=1,
        props=frozenset({Prop.ELEMENTWISE, Prop.LAX, *props}),
        attrs=(),
        shape=same_shape,
        float_fn=lambda x, attrs: float_fn(x),
        ff_fn=lambda f, x, attrs: ff_fn(f, x),
        expr_fn=lambda a, attrs, shapes: expr_fn(a[0]),
        emit=lambda a, attrs, shapes: emit(a[0]),
        flops=elementwise_flops,
        torch_fn=torch_fn or _torch_unary(name),
    )


def _unary_random(name, float_fn, emit, torch_fn=None) -> OpRecord:
    return OpRecord(
        name=name,
        levels=ALL,
        arity=1,
        props=frozenset({Prop.ELEMENTWISE, Prop.RANDOM_FUNCTION, Prop.ATOM}),
        attrs=(),
        shape=same_shape,
        float_fn=lambda x, attrs: float_fn(x),
        ff_fn=lambda f, x, attrs: f.random_function(name, x),
        expr_fn=lambda a, attrs, shapes: app(name, a[0]),
        emit=lambda a, attrs, shapes: emit(a[0]),
        flops=elementwise_flops,
        torch_fn=torch_fn or _torch_unary(name),
    )


def _binary(name, float_fn, ff_fn, emit_op, commutative) -> OpRecord:
    props = {Prop.ELEMENTWISE, Prop.LAX} | ({Prop.COMMUTATIVE} if commutative else set())
    return OpRecord(
        name=name,
        levels=ALL,
        arity=2,
        props=frozenset(props),
        attrs=(),
        shape=broadcast_shape,
        float_fn=lambda x, y, attrs: float_fn(x, y),
        ff_fn=lambda f, x, y, attrs: ff_fn(f, x, y),
        expr_fn=lambda a, attrs, shapes: app(name, a[0], a[1]),
        emit=lambda a, attrs, shapes: f"({a[0]} {emit_op} {a[1]})",
        flops=elementwise_flops,
        torch_fn=_torch_binary(name),
    )


_register(_identity_io("input", KB, lambda a, attrs, shapes: a[0]))
_register(_identity_io("output", BLOCK, lambda a, attrs, shapes: a[0]))

_register(
    OpRecord(
        name="matmul",
        levels=KB,
        arity=2,
        props=frozenset({Prop.LAX}),
        attrs=(),
        shape=matmul_shape,
        float_fn=lambda x, y, attrs: ff.matmul_flat(x, y),
        ff_fn=lambda f, x, y, attrs: f.matmul(x, y),
        expr_fn=lambda a, attrs, shapes: total(shapes[0][-1], app("mul", a[0], a[1])),
        emit=lambda a, attrs, shapes: f"tl.dot({a[0]}, {a[1]}{_dot_precision(attrs)})",
        flops=matmul_flops,
        torch_fn=lambda out, x, y, attrs: _torch().matmul(x, y, out=out),
    )
)

_register(
    _unary_lax("exp", np.exp, ff.Field.exp, lambda x: app("exp", x), lambda x: f"tl.exp({x})",
               props=(Prop.ATOM,))
)
_register(
    _unary_lax(
        "square",
        lambda x: x * x,
        lambda f, x: f.mul(x, x),
        lambda x: app("mul", x, x),
        lambda x: f"({x} * {x})",
    )
)
_register(_unary_random("sqrt", np.sqrt, lambda x: f"tl.sqrt({x})"))
_register(
    _unary_random(
        "silu",
        _silu,
        lambda x: f"({x} * tl.sigmoid({x}))",
        lambda out, x, attrs: _torch().sigmoid(x, out=out).mul_(x),
    )
)
_register(
    _unary_random(
        "gelu",
        _gelu,
        # 0.5 * (1 + tanh(z)) == sigmoid(2z): no tanh needed in Triton.
        lambda x: f"({x} * tl.sigmoid(1.5957691216057308 * ({x} + 0.044715 * {x} * {x} * {x})))",
        lambda out, x, attrs: out.copy_(_torch().nn.functional.gelu(x, approximate="tanh")),
    )
)
_register(
    _unary_random(
        "relu",
        lambda x: np.maximum(x, 0),
        lambda x: f"tl.maximum({x}, 0.0)",
        lambda out, x, attrs: _torch().clamp_min(x, 0, out=out),
    )
)

_register(
    _unary_random(
        "tanh",
        np.tanh,
        lambda x: f"(2.0 * tl.sigmoid(2.0 * {x}) - 1.0)",  # tanh(x) = 2 sigmoid(2x) - 1
    )
)
_register(_unary_random("sigmoid", _sigmoid, lambda x: f"tl.sigmoid({x})"))
_register(
    _unary_random(
        "gelu_erf",
        _gelu_erf,
        lambda x: f"(0.5 * {x} * (1.0 + tl.math.erf({x} * 0.7071067811865476)))",
        lambda out, x, attrs: out.copy_(_torch().nn.functional.gelu(x)),
    )
)

_register(_binary("add", np.add, ff.Field.add, "+", commutative=True))
_register(_binary("sub", np.subtract, ff.Field.sub, "-", commutative=False))
_register(_binary("mul", np.multiply, ff.Field.mul, "*", commutative=True))
_register(_binary("div", np.divide, ff.Field.div, "/", commutative=False))

# --- Python numbers as operands ----------------------------------------------------------------
# ``x * 0.125`` is one op with the number as attributes (its exact ratio of integers), not a
# constant node: a number then needs no tile, no load and no imap, the search places it like a
# unary op, and the finite field gets the exact rational value. ``x - c`` is ``x + (-c)``.

# The number is stored exactly as m * 2**e (|m| < 2**53), m split in a signed high and low part
# so that every attribute fits a 32-bit int: 0.125 is {hi: 0, lo: 1, exp: -3}.
SCALAR_ATTRS = ("scalar_hi", "scalar_lo", "scalar_exp")
_LOW_BITS = 26


def scalar_attrs(value) -> dict[str, int]:
    """The attributes carrying the finite Python number ``value`` exactly."""
    mantissa, exponent = math.frexp(float(value))
    m, e = int(mantissa * 2**53), exponent - 53  # exact: the mantissa has 53 bits
    while m and m % 2 == 0:
        m, e = m // 2, e + 1
    if m == 0:
        e = 0
    sign, mag = (-1 if m < 0 else 1), abs(m)
    low = mag & ((1 << _LOW_BITS) - 1)
    return {"scalar_hi": sign * (mag >> _LOW_BITS), "scalar_lo": sign * low, "scalar_exp": e}


def scalar_ratio(attrs) -> tuple[int, int]:
    """The number as an exact ratio of integers (what the finite field needs)."""
    m = attrs["scalar_hi"] * (1 << _LOW_BITS) + attrs["scalar_lo"]
    e = attrs["scalar_exp"]
    return (m << e, 1) if e >= 0 else (m, 1 << -e)


def scalar_value(attrs) -> float:
    """The float ``scalar_attrs`` came from (exactly it)."""
    m = attrs["scalar_hi"] * (1 << _LOW_BITS) + attrs["scalar_lo"]
    return math.ldexp(float(m), attrs["scalar_exp"])


def has_scalar(attrs) -> bool:
    return SCALAR_ATTRS[0] in attrs


# How the builder writes ``binary(a, b)`` with one Python number: (binary op, number first?) ->
# (op, sign applied to the number). ``x - c`` is ``x + (-c)``: negation is exact.
SCALAR_FORMS = {
    ("add", False): ("add_scalar", 1),
    ("add", True): ("add_scalar", 1),
    ("sub", False): ("add_scalar", -1),
    ("sub", True): ("rsub_scalar", 1),
    ("mul", False): ("mul_scalar", 1),
    ("mul", True): ("mul_scalar", 1),
    ("div", False): ("div_scalar", 1),
    ("div", True): ("rdiv_scalar", 1),
}


def _scalar_literal(attrs) -> str:
    return repr(scalar_value(attrs))


def _scalar(name: str, binary: str, reverse: bool) -> OpRecord:
    """``binary(x, c)``, or ``binary(c, x)`` when ``reverse``, for the number c in the attrs;
    every meaning is the binary op's with c as the other operand."""
    base = REGISTRY[binary]

    def order(x, c):
        return (c, x) if reverse else (x, c)

    def torch_fn(out, x, attrs):
        torch = _torch()
        c = scalar_value(attrs)
        if reverse:  # a 0-d operand keeps x's dtype
            return getattr(torch, binary)(torch.tensor(c, device=x.device), x, out=out)
        return getattr(torch, binary)(x, c, out=out)

    return OpRecord(
        name=name,
        levels=ALL,
        arity=1,
        props=frozenset({Prop.ELEMENTWISE, Prop.LAX, Prop.SCALAR}),
        attrs=SCALAR_ATTRS,
        shape=same_shape,
        float_fn=lambda x, attrs: base.float_fn(*order(x, scalar_value(attrs)), attrs),
        ff_fn=lambda f, x, attrs: base.ff_fn(
            f, *order(x, f.constant(*scalar_ratio(attrs))), attrs),
        expr_fn=lambda a, attrs, shapes: app(
            binary, *order(a[0], const(*scalar_ratio(attrs)))),
        emit=lambda a, attrs, shapes: base.emit(list(order(a[0], _scalar_literal(attrs))),
                                                attrs, shapes),
        flops=elementwise_flops,
        torch_fn=torch_fn,
    )


_register(_scalar("add_scalar", "add", reverse=False))
_register(_scalar("mul_scalar", "mul", reverse=False))
_register(_scalar("div_scalar", "div", reverse=False))
_register(_scalar("rsub_scalar", "sub", reverse=True))
_register(_scalar("rdiv_scalar", "div", reverse=True))


def mean_of(n: int, summed: Term) -> Term:
    """The abstract expression of a mean of ``n`` terms whose sum is ``summed``: the sum divided
    by the number ``n`` (a ``const`` atom, exact for every n, so a ``div_scalar`` by n computes
    it too). A mean that enters a sum (``x - mean(x)``, ``mean(x^2) + eps``) is not a constant
    factor away from the plain sum, so its 1/n is kept; only ``rms_norm`` without an eps, where
    the 1/n is a constant factor of the whole result, drops it (as in the paper)."""
    return app("div", summed, const(n, 1))


def _reduction(name: str, mean: bool) -> OpRecord:
    """``reduce_sum`` / ``reduce_mean`` over one dim, kept as size 1; the mean divides by the
    dim's length (``mean_of``)."""
    numpy_fn = np.mean if mean else np.sum
    torch_name = "mean" if mean else "sum"

    def ff_fn(f: ff.Field, x: ff.FFValue, attrs) -> ff.FFValue:
        total_ = f.reduce_sum(x, attrs["dim"])
        return f.scale(total_, 1, x.shape[attrs["dim"]]) if mean else total_

    def expr_fn(a, attrs, shapes) -> Term:
        n = shapes[0][attrs["dim"]]
        return mean_of(n, total(n, a[0])) if mean else total(n, a[0])

    def emit(a, attrs, shapes) -> str:
        dim = attrs["dim"] % len(shapes[0])
        summed = f"tl.sum({a[0]}, axis={dim}, keep_dims=True)"
        return f"({summed} / {shapes[0][dim]})" if mean else summed

    return OpRecord(
        name=name,
        levels=KB,
        arity=1,
        props=frozenset({Prop.REDUCTION, Prop.LAX}),
        attrs=("dim",),
        shape=reduce_shape,
        float_fn=lambda x, attrs: numpy_fn(x, axis=attrs["dim"], keepdims=True),
        ff_fn=ff_fn,
        expr_fn=expr_fn,
        emit=emit,
        flops=input_flops,
        torch_fn=lambda out, x, attrs: getattr(_torch(), torch_name)(
            x, dim=attrs["dim"], keepdim=True, out=out
        ),
    )


_register(_reduction("reduce_sum", mean=False))
_register(_reduction("reduce_mean", mean=True))

_register(
    OpRecord(
        name="reduce_max",
        levels=KB,
        arity=1,
        # Outside LAX: a random symmetric function of each row to the verifier. A max that only
        # stabilises a softmax cancels (exp(x - m) / sum exp(x - m)), and the field's exp
        # factors exp(x - m) = exp(x) exp(-m) for any m, so the stable form verifies exactly.
        props=frozenset({Prop.REDUCTION, Prop.RANDOM_FUNCTION, Prop.ATOM}),
        attrs=("dim",),
        shape=reduce_shape,
        float_fn=lambda x, attrs: np.max(x, axis=attrs["dim"], keepdims=True),
        ff_fn=lambda f, x, attrs: f.row_function("reduce_max", x, attrs["dim"]),
        expr_fn=lambda a, attrs, shapes: app(
            "reduce_max", total(shapes[0][attrs["dim"]], a[0])),
        emit=lambda a, attrs, shapes: (
            f"tl.max({a[0]}, axis={attrs['dim'] % len(shapes[0])}, keep_dims=True)"),
        flops=input_flops,
        torch_fn=lambda out, x, attrs: _torch().amax(x, dim=attrs["dim"], keepdim=True, out=out),
        pad=-math.inf,
    )
)


def _rms_norm_expr(a, attrs, shapes) -> Term:
    mean_sq = total(shapes[0][-1], app("mul", a[0], a[0]))
    if has_scalar(attrs):  # the eps is added to the mean: its 1/n is kept (``mean_of``)
        mean_sq = app("add", mean_of(shapes[0][-1], mean_sq), const(*scalar_ratio(attrs)))
    return app("div", a[0], app("sqrt", mean_sq))


def _rms_norm_emit(a, attrs, shapes) -> str:
    eps = f" + {_scalar_literal(attrs)}" if has_scalar(attrs) else ""
    return (f"({a[0]} / tl.sqrt(tl.sum({a[0]} * {a[0]}, axis={len(shapes[0]) - 1}, "
            f"keep_dims=True) / {shapes[0][-1]}{eps}))")


def _rms_norm_float(x, attrs):
    eps = scalar_value(attrs) if has_scalar(attrs) else 0.0
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)


def _rms_norm_record(name: str, eps: bool) -> OpRecord:
    """``rms_norm`` (no eps: the paper's op) or ``rms_norm_eps`` (the eps as ``SCALAR_ATTRS``):
    one set of meanings, each adding the eps only where the attributes carry one."""
    return OpRecord(
        name=name,
        levels=KB,
        arity=1,
        props=frozenset({Prop.REDUCTION, Prop.RANDOM_FUNCTION, Prop.NORM}
                        | ({Prop.SCALAR} if eps else set())),
        attrs=SCALAR_ATTRS if eps else (),
        shape=same_shape,
        float_fn=_rms_norm_float,
        ff_fn=_ff_rms_norm,
        expr_fn=_rms_norm_expr,
        emit=_rms_norm_emit,
        flops=lambda shapes, out: 3 * _numel(out),
        torch_fn=_torch_rms_norm,
    )


# x / sqrt(mean(x^2, -1) + eps); ``rms_norm`` is eps = 0
_register(_rms_norm_record("rms_norm_eps", eps=True))
_register(_rms_norm_record("rms_norm", eps=False))

_register(
    OpRecord(
        name="transpose",
        levels=KB,
        arity=1,
        props=frozenset({Prop.VIEW, Prop.LAX}),
        attrs=("dim0", "dim1"),
        shape=transpose_shape,
        float_fn=_transpose,
        ff_fn=lambda f, x, attrs: ff.map_both(x, lambda v: _transpose(v, attrs)),
        expr_fn=lambda a, attrs, shapes: a[0],
        emit=lambda a, attrs, shapes: _emit_transpose(a[0], attrs, len(shapes[0])),
        flops=no_flops,
        torch_fn=lambda out, x, attrs: x.transpose(attrs["dim0"], attrs["dim1"]),  # a view
    )
)

# Accumulators: per iteration the op's float/ff/expr meaning gives the contribution of the tile,
# contributions are summed over the loop, then ``finish`` runs once after the loop.

_IDENTITY_FINISH = Finish(
    float_fn=lambda acc, n: acc,
    ff_fn=lambda f, acc, n: acc,
    expr_fn=lambda t, n: t,
    emit=lambda acc, n: acc,
)


def _accumulator(name, shape, float_fn, ff_fn, expr_fn, emit, finish) -> OpRecord:
    return OpRecord(
        name=name,
        levels=BLOCK,
        arity=1,
        props=frozenset({Prop.ACCUMULATOR, Prop.REDUCTION, Prop.LAX}),
        attrs=(),
        shape=shape,
        float_fn=lambda x, attrs: float_fn(x),
        ff_fn=lambda f, x, attrs: ff_fn(f, x),
        expr_fn=lambda a, attrs, shapes: expr_fn(a[0], shapes[0]),
        # attrs["deferred"]: the codegen keeps a full-tile accumulator and sums its last dim once
        # after the loop, so the emitter gives only the elementwise part of the contribution.
        emit=lambda a, attrs, shapes: emit(a[0], len(shapes[0]) - 1, attrs.get("deferred")),
        flops=input_flops,
        finish=finish,
    )


_register(
    _accumulator(
        "accum_sum",
        same_shape,
        lambda x: x,
        lambda f, x: x,
        lambda t, shape: t,
        lambda x, last, deferred: x,
        _IDENTITY_FINISH,
    )
)
_register(
    _accumulator(
        "accum_sum_last",
        last_reduced_shape,
        lambda x: np.sum(x, axis=-1, keepdims=True),
        lambda f, x: f.reduce_sum(x, -1),
        lambda t, shape: total(shape[-1], t),
        lambda x, last, deferred: x if deferred else f"tl.sum({x}, axis={last}, keep_dims=True)",
        _IDENTITY_FINISH,
    )
)


def _squares_last(name: str, finish: Finish) -> OpRecord:
    """An accumulator of the sum of squares over the last dim; ``finish`` turns the sum into
    the root mean square (``accum_rms_last``) or the mean square (``accum_ms_last``)."""
    return _accumulator(
        name,
        last_reduced_shape,
        lambda x: np.sum(x * x, axis=-1, keepdims=True),
        lambda f, x: f.reduce_sum(f.mul(x, x), -1),
        lambda t, shape: total(shape[-1], app("mul", t, t)),
        lambda x, last, deferred: f"({x} * {x})" if deferred
        else f"tl.sum({x} * {x}, axis={last}, keep_dims=True)",
        finish,
    )


_register(
    _squares_last(
        "accum_rms_last",
        Finish(
            float_fn=lambda acc, n: np.sqrt(acc / n),
            ff_fn=lambda f, acc, n: f.random_function("sqrt", f.scale(acc, 1, n)),
            expr_fn=lambda t, n: app("sqrt", t),
            emit=lambda acc, n: f"tl.sqrt({acc} / {n})",
        ),
    )
)
# mean(x^2) over the last dim: with ``add_scalar`` and ``sqrt`` after the loop, the RMS of a row
# with an eps (the 1/n is kept in the expression, as for ``reduce_mean``: ``mean_of``)
_register(
    _squares_last(
        "accum_ms_last",
        Finish(
            float_fn=lambda acc, n: acc / n,
            ff_fn=lambda f, acc, n: f.scale(acc, 1, n),
            expr_fn=lambda t, n: mean_of(n, t),
            emit=lambda acc, n: f"({acc} / {n})",
        ),
    )
)

ACCUMULATOR_KINDS = {
    "sum": "accum_sum",
    "sum_last": "accum_sum_last",
    "rms_last": "accum_rms_last",
    "rms": "accum_rms_last",
    "mean_square_last": "accum_ms_last",
}


def get(name: str) -> OpRecord:
    """The record of ``name``; KeyError names the unknown op."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}") from None


def ops_with(prop: Prop) -> frozenset[str]:
    return frozenset(name for name, rec in REGISTRY.items() if prop in rec.props)


def atom_heads() -> frozenset[str]:
    """Term heads that are atoms of degree one to the verifier's bound: the opaque functions
    (random functions, exp) and constants (degree 0 really; counting 1 only loosens the bound)."""
    return ops_with(Prop.ATOM) | {CONST}


def reduced_dim(rec: OpRecord, attrs: dict, rank: int) -> int | None:
    """The dim that ``rec`` reduces to size 1 (``reduce_sum``'s ``dim``, the last dim of a
    ``*_last`` accumulator), or None for an op that keeps its operand's shape."""
    if not rec.has(Prop.REDUCTION) or rec.shape is same_shape:
        return None
    return attrs.get("dim", -1) % rank
