"""The user-facing builder: write a tensor program or a µGraph the way the upstream API does.

    import mirage as mi
    g = mi.new_kernel_graph()
    X = g.new_input(dims=(16, 4096), dtype=mi.float16)
    W = g.new_input(dims=(4096, 6144), dtype=mi.float16)
    g.mark_output(g.matmul(g.rms_norm(X), W))
    program = g.kernel_graph()

A µGraph adds graph-defined kernels: build a block graph with ``new_threadblock_graph`` and place
it with ``g.customized([inputs], tb)``. Maps accept ``-1`` or ``None`` for "not mapped".
Every call checks its operands at once and raises ``IRError`` naming the rule it breaks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mirage.errors import InputError
from mirage.ir import (
    BlockGraph,
    BlockNode,
    KernelGraph,
    KernelNode,
    Ref,
    TensorType,
    infer,
    validate,
)
from mirage.ir.infer import Rule, exact_int, int_sequence
from mirage.ir.target import Target, resolve_target
from mirage.ops import ACCUMULATOR_KINDS

float16, bfloat16, float32 = "fp16", "bf16", "fp32"


def _map(values, where: str = "imap") -> tuple | None:
    """A grid map as the IR stores it: ``-1`` and ``None`` mean "not mapped"; each entry must be
    an exact int (a float or a string is refused, not truncated)."""
    if values is None:
        return None
    items = int_sequence(values, where, Rule.BAD_MAP)
    return tuple(_dim(v, f"{where}[{k}]") for k, v in enumerate(items))


def _dim(value, where: str = "fmap") -> int | None:
    value = exact_int(value, where, Rule.BAD_MAP, allow_none=True)
    return None if value is None or value < 0 else value


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name}: expected an int >= 1, got {type(value).__name__} "
                         f"{value!r:.40}")
    return value


@dataclass(frozen=True, eq=False)
class DTensor:
    """A device tensor of a kernel graph under construction."""

    graph: KNGraph
    ref: Ref
    type: TensorType

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def num_dims(self) -> int:
        return len(self.type.shape)

    def dim(self, i: int) -> int:
        return self.type.shape[i]


@dataclass(frozen=True, eq=False)
class STensor:
    """A tile of a block graph under construction."""

    graph: TBGraph
    index: int
    type: TensorType

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape


class _OpMethods:
    """The pre-defined ops, shared by kernel and block builders through ``_op``.

    ``add``, ``sub``, ``mul`` and ``div`` take a Python number for either operand
    (``g.mul(x, 0.125)``, ``g.sub(1.0, x)``): the number becomes the exact attributes of a
    ``*_scalar`` op (see ``mirage.ops.registry.SCALAR_FORMS``).
    """

    def _op(self, name, args, attrs=None):  # pragma: no cover - provided by subclasses
        raise NotImplementedError

    def _binary(self, name, a, b):
        from mirage.ops.registry import SCALAR_FORMS, scalar_attrs

        a_num, b_num = self._is_number(a), self._is_number(b)
        if not (a_num or b_num):
            return self._op(name, (a, b))
        if a_num and b_num:
            raise InputError(f"{name}: at least one operand must be a tensor, got {a!r}, {b!r}")
        x, c = (b, a) if a_num else (a, b)
        if not math.isfinite(c):
            raise InputError(f"{name}: the number {c!r} is not finite")
        op, sign = SCALAR_FORMS[(name, a_num)]
        return self._op(op, (x,), scalar_attrs(sign * float(c)))

    def matmul(self, a, b):
        return self._op("matmul", (a, b))

    def exp(self, x):
        return self._op("exp", (x,))

    def square(self, x):
        return self._op("square", (x,))

    def sqrt(self, x):
        return self._op("sqrt", (x,))

    def silu(self, x):
        return self._op("silu", (x,))

    def gelu(self, x, approximate: str = "tanh"):
        """GELU. ``approximate="tanh"`` (the default here, op ``gelu``, as saved files have it)
        or ``"none"``: the exact erf form (op ``gelu_erf``; torch's ``F.gelu`` default)."""
        if approximate not in ("tanh", "none"):
            raise InputError(f"gelu: approximate must be 'tanh' or 'none', got {approximate!r}")
        return self._op("gelu" if approximate == "tanh" else "gelu_erf", (x,))

    def gelu_erf(self, x):
        return self._op("gelu_erf", (x,))

    def relu(self, x):
        return self._op("relu", (x,))

    def tanh(self, x):
        return self._op("tanh", (x,))

    def sigmoid(self, x):
        return self._op("sigmoid", (x,))

    def add(self, a, b):
        return self._binary("add", a, b)

    def sub(self, a, b):
        return self._binary("sub", a, b)

    def mul(self, a, b):
        return self._binary("mul", a, b)

    def div(self, a, b):
        return self._binary("div", a, b)

    def reduce_sum(self, x, dim: int):
        return self._op("reduce_sum", (x,), {"dim": dim})

    reduction = reduce_sum  # the upstream name

    def reduce_mean(self, x, dim: int):
        return self._op("reduce_mean", (x,), {"dim": dim})

    def reduce_max(self, x, dim: int):
        return self._op("reduce_max", (x,), {"dim": dim})

    def rms_norm(self, x, normalized_shape=None, eps: float | None = None):
        """x / sqrt(mean(x^2, -1) + eps); without ``eps`` (or 0) the op ``rms_norm``."""
        from mirage.ops.registry import scalar_attrs

        if normalized_shape is not None and tuple(normalized_shape) != x.shape[-1:]:
            raise ValueError("rms_norm normalizes over the last dim only")
        if not eps:
            return self._op("rms_norm", (x,))
        if not self._is_number(eps) or not math.isfinite(eps) or eps < 0:
            raise InputError(f"rms_norm: eps must be a finite number >= 0, got {eps!r}")
        return self._op("rms_norm_eps", (x,), scalar_attrs(eps))

    def transpose(self, x, dim0: int = -2, dim1: int = -1):
        return self._op("transpose", (x,), {"dim0": dim0, "dim1": dim1})

    @staticmethod
    def _is_number(value) -> bool:
        """A Python (or numpy) real number, not a bool and not a tensor."""
        import numbers

        return isinstance(value, numbers.Real) and not isinstance(value, bool)


class KNGraph(_OpMethods):
    """A kernel graph under construction."""

    def __init__(self, target: Target | str | None = None):
        self.target = resolve_target(target)
        self._nodes: list[KernelNode] = []
        self._outputs: list[Ref] = []

    def _own(self, t: DTensor) -> Ref:
        if not isinstance(t, DTensor) or t.graph is not self:
            raise InputError(f"operand {t!r:.60} is not a tensor of this kernel graph")
        return t.ref

    def _add(self, node: KernelNode) -> list[DTensor]:
        self._nodes.append(node)
        i = len(self._nodes) - 1
        return [DTensor(self, Ref(i, k), t) for k, t in enumerate(node.outputs)]

    def new_input(self, dims, dtype: str = float16, name: str | None = None) -> DTensor:
        """A device input of shape ``dims``. ``name`` is any printable text up to 128 characters
        (generated code uses a mangled identifier); two inputs may not share a name. Without one
        the input is named ``in<k>`` (the first such name not taken)."""
        used = {n.name for n in self._nodes if n.op == "input"}
        if name is None or name == "":
            k = len(used)
            while f"in{k}" in used:
                k += 1
            name = f"in{k}"
        elif isinstance(name, str) and name in used:
            raise infer.IRError(Rule.BAD_NAME, f"{name!r:.60} is already an input of this graph",
                                "name")
        return self._add(infer.kernel_input(dims, dtype, name, where="dims"))[0]

    def _op(self, name, args, attrs=None) -> DTensor:
        refs = [self._own(a) for a in args]
        return self._add(infer.kernel_op(tuple(self._nodes), name, refs, attrs or {}))[0]

    def customized(self, inputs, bgraph: TBGraph) -> list[DTensor]:
        """Place a graph-defined kernel; returns its outputs in ``new_output`` order."""
        if not isinstance(bgraph, TBGraph):
            raise InputError(f"customized: expected a block graph, got {bgraph!r:.40}")
        inputs = list(int_sequence(inputs, "inputs", Rule.BAD_REFERENCE))
        refs = [self._own(t) for t in inputs]
        block = bgraph.block_graph(inputs)
        return self._add(infer.customized_op(tuple(self._nodes), refs, block))

    def mark_output(self, t: DTensor) -> None:
        self._outputs.append(self._own(t))

    def kernel_graph(self) -> KernelGraph:
        """The frozen graph, checked against the builder's target."""
        return validate(KernelGraph(tuple(self._nodes), tuple(self._outputs)), self.target)

    def superoptimize(self, *, max_kernel_ops: int = 5, max_block_ops: int = 8,
                      num_workers: int = 1, time_budget_s: float = 600.0,
                      grid_dims=None, keep: int = 8, target: Target | str | None = None,
                      cache_dir: str | None = None, profile: bool | None = None):
        """Search verified µGraphs for this program.

        With a CUDA GPU (or ``profile=True``) the candidates are compiled, timed and the
        fastest compiled callable is returned; otherwise the verified candidates, best
        cost-model estimate first. ``grid_dims`` restricts the first kernel to that grid.
        ``target`` (a ``Target`` or its name) defaults to ``default_target()``.
        Results are cached under ``cache_dir`` by the hash of (program, limits, code version).
        """
        from mirage.search import SearchConfig, search_cached

        for name, value in (("max_kernel_ops", max_kernel_ops), ("max_block_ops", max_block_ops),
                            ("num_workers", num_workers), ("keep", keep)):
            _positive_int(value, name)
        if (isinstance(time_budget_s, bool) or not isinstance(time_budget_s, (int, float))
                or not math.isfinite(time_budget_s) or time_budget_s <= 0):
            raise InputError(f"time_budget_s: expected a finite number > 0, got "
                             f"{time_budget_s!r:.40}")
        if grid_dims is not None:
            grid_dims = infer.check_grid(tuple(int_sequence(grid_dims, "grid_dims"))
                                         + (1,) * (3 - len(grid_dims)), 1, "grid_dims")[0]
        if profile not in (None, True, False):
            raise InputError(f"profile: expected True, False or None, got {profile!r:.40}")
        target = resolve_target(target)
        if profile and not _cuda_available():
            raise InputError("profile=True: no CUDA GPU is available to time candidates on; "
                             "profile=False returns the verified candidates ranked by the cost "
                             "model")
        config = SearchConfig(max_kernel_ops=max_kernel_ops, max_block_ops=max_block_ops,
                              num_workers=num_workers, time_budget_s=float(time_budget_s),
                              grid_hint=grid_dims, keep=keep, target=target.name)
        result = search_cached(self.kernel_graph(), config, cache_dir)
        if profile is None:
            profile = _cuda_available()
        if not profile or not result.candidates:
            return result.candidates
        from mirage.profile.select import fastest

        return fastest(result.candidates)


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


class TBGraph(_OpMethods):
    """A block graph under construction: ``grid_dim`` blocks, a loop of ``forloop_range``."""

    def __init__(self, grid_dim, forloop_range: int = 1):
        sizes = int_sequence(grid_dim, "grid_dim", Rule.BAD_MAP)
        if not 1 <= len(sizes) <= 3:
            raise infer.IRError(Rule.BAD_MAP, f"expected 1-3 grid sizes, got {len(sizes)}",
                                "grid_dim")
        self.grid, self.forloop_range = infer.check_grid(sizes + (1,) * (3 - len(sizes)),
                                                         forloop_range, "grid_dim")
        self._nodes: list[BlockNode] = []
        self._sources: list[DTensor] = []  # the kernel tensor behind each block input

    def _own(self, t: STensor) -> int:
        if not isinstance(t, STensor) or t.graph is not self:
            raise InputError(f"operand {t!r:.60} is not a tile of this block graph")
        return t.index

    def _add(self, node: BlockNode) -> STensor:
        self._nodes.append(node)
        return STensor(self, len(self._nodes) - 1, node.type)

    def new_input(self, dtensor: DTensor, imap=None, fmap=None, *, input_map=None,
                  forloop_dim=None) -> STensor:
        """A tile of ``dtensor``: grid axis a splits dim ``imap[a]``, the loop splits ``fmap``."""
        imap = _map(input_map if imap is None else imap, "imap")
        fmap = _dim(forloop_dim if fmap is None else fmap, "fmap")
        if not isinstance(dtensor, DTensor):
            raise InputError(f"new_input: expected a kernel tensor, got {dtensor!r:.40}")
        self._sources.append(dtensor)
        node = infer.block_input(dtensor.type, len(self._sources) - 1, self.grid,
                                 self.forloop_range, imap, fmap)
        return self._add(node)

    def _op(self, name, args, attrs=None) -> STensor:
        idx = [self._own(a) for a in args]
        return self._add(infer.block_op(tuple(self._nodes), name, idx, attrs or {}))

    def forloop_accum(self, x: STensor, kind: str = "sum") -> STensor:
        """Accumulate over the loop: ``sum``, ``sum_last`` (also sums the last dim) or ``rms``."""
        if not isinstance(kind, str) or kind not in ACCUMULATOR_KINDS:
            raise InputError(f"kind: unknown accumulator {kind!r:.40}; one of "
                             f"{sorted(ACCUMULATOR_KINDS)}")
        return self._op(ACCUMULATOR_KINDS[kind], (x,))

    def new_output(self, stensor: STensor, omap=None, *, output_map=None) -> None:
        omap = _map(output_map if omap is None else omap, "omap")
        self._add(infer.block_output(tuple(self._nodes), self._own(stensor), omap))

    def block_graph(self, operands: list[DTensor]) -> BlockGraph:
        """The frozen block graph with each input's ``source`` pointing into ``operands``."""
        nodes = []
        for n in self._nodes:
            if n.op == "input":
                tensor = self._sources[n.source]
                matches = [k for k, t in enumerate(operands) if t is tensor]
                if not matches:
                    raise InputError("customized(): a block input's tensor is not among inputs")
                n = BlockNode("input", (), n.type, source=matches[0], imap=n.imap, fmap=n.fmap)
            nodes.append(n)
        return BlockGraph(self.grid, self.forloop_range, tuple(nodes))


def new_kernel_graph(target: Target | str | None = None) -> KNGraph:
    """A kernel graph to build, checked against ``target`` (default ``default_target()``)."""
    return KNGraph(target)


def new_threadblock_graph(grid_dim, forloop_range: int = 1) -> TBGraph:
    return TBGraph(grid_dim, forloop_range)
