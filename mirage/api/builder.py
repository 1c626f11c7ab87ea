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

from dataclasses import dataclass

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
from mirage.ir.target import DEFAULT_TARGET, Target
from mirage.ops import ACCUMULATOR_KINDS

float16, bfloat16, float32 = "fp16", "bf16", "fp32"


def _map(values) -> tuple | None:
    if values is None:
        return None
    return tuple(None if v is None or v < 0 else int(v) for v in values)


def _dim(value) -> int | None:
    return None if value is None or value < 0 else int(value)


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
    """The pre-defined ops, shared by kernel and block builders through ``_op``."""

    def _op(self, name, args, attrs=None):  # pragma: no cover - provided by subclasses
        raise NotImplementedError

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

    def gelu(self, x):
        return self._op("gelu", (x,))

    def relu(self, x):
        return self._op("relu", (x,))

    def add(self, a, b):
        return self._op("add", (a, b))

    def sub(self, a, b):
        return self._op("sub", (a, b))

    def mul(self, a, b):
        return self._op("mul", (a, b))

    def div(self, a, b):
        return self._op("div", (a, b))

    def reduce_sum(self, x, dim: int):
        return self._op("reduce_sum", (x,), {"dim": dim})

    reduction = reduce_sum  # the upstream name

    def reduce_mean(self, x, dim: int):
        return self._op("reduce_mean", (x,), {"dim": dim})

    def rms_norm(self, x, normalized_shape=None):
        if normalized_shape is not None and tuple(normalized_shape) != x.shape[-1:]:
            raise ValueError("rms_norm normalizes over the last dim only")
        return self._op("rms_norm", (x,))

    def transpose(self, x, dim0: int = -2, dim1: int = -1):
        return self._op("transpose", (x,), {"dim0": dim0, "dim1": dim1})


class KNGraph(_OpMethods):
    """A kernel graph under construction."""

    def __init__(self, target: Target = DEFAULT_TARGET):
        self.target = target
        self._nodes: list[KernelNode] = []
        self._outputs: list[Ref] = []

    def _own(self, t: DTensor) -> Ref:
        if not isinstance(t, DTensor) or t.graph is not self:
            raise ValueError(f"{t!r} is not a tensor of this kernel graph")
        return t.ref

    def _add(self, node: KernelNode) -> list[DTensor]:
        self._nodes.append(node)
        i = len(self._nodes) - 1
        return [DTensor(self, Ref(i, k), t) for k, t in enumerate(node.outputs)]

    def new_input(self, dims, dtype: str = float16, name: str | None = None) -> DTensor:
        name = name or f"in{len([n for n in self._nodes if n.op == 'input'])}"
        return self._add(infer.kernel_input(tuple(dims), dtype, name))[0]

    def _op(self, name, args, attrs=None) -> DTensor:
        refs = [self._own(a) for a in args]
        return self._add(infer.kernel_op(tuple(self._nodes), name, refs, attrs or {}))[0]

    def customized(self, inputs, bgraph: TBGraph) -> list[DTensor]:
        """Place a graph-defined kernel; returns its outputs in ``new_output`` order."""
        inputs = list(inputs)
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
                      grid_dims=None, keep: int = 8, target: str = "h100",
                      cache_dir: str | None = None, profile: bool | None = None):
        """Search verified µGraphs for this program.

        With a CUDA GPU (or ``profile=True``) the candidates are compiled, timed and the
        fastest compiled callable is returned; otherwise the verified candidates, best
        cost-model estimate first. ``grid_dims`` restricts the first kernel to that grid.
        Results are cached under ``cache_dir`` by the hash of (program, limits, code version).
        """
        from mirage.search import SearchConfig, search_cached

        config = SearchConfig(max_kernel_ops=max_kernel_ops, max_block_ops=max_block_ops,
                              num_workers=num_workers, time_budget_s=time_budget_s,
                              grid_hint=None if grid_dims is None else tuple(grid_dims),
                              keep=keep, target=target)
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
        grid = tuple(int(g) for g in grid_dim) + (1,) * (3 - len(tuple(grid_dim)))
        self.grid = grid
        self.forloop_range = int(forloop_range)
        self._nodes: list[BlockNode] = []
        self._sources: list[DTensor] = []  # the kernel tensor behind each block input

    def _own(self, t: STensor) -> int:
        if not isinstance(t, STensor) or t.graph is not self:
            raise ValueError(f"{t!r} is not a tile of this block graph")
        return t.index

    def _add(self, node: BlockNode) -> STensor:
        self._nodes.append(node)
        return STensor(self, len(self._nodes) - 1, node.type)

    def new_input(self, dtensor: DTensor, imap=None, fmap=None, *, input_map=None,
                  forloop_dim=None) -> STensor:
        """A tile of ``dtensor``: grid axis a splits dim ``imap[a]``, the loop splits ``fmap``."""
        imap = _map(input_map if imap is None else imap)
        fmap = _dim(forloop_dim if fmap is None else fmap)
        self._sources.append(dtensor)
        node = infer.block_input(dtensor.type, len(self._sources) - 1, self.grid,
                                 self.forloop_range, imap, fmap)
        return self._add(node)

    def _op(self, name, args, attrs=None) -> STensor:
        idx = [self._own(a) for a in args]
        return self._add(infer.block_op(tuple(self._nodes), name, idx, attrs or {}))

    def forloop_accum(self, x: STensor, kind: str = "sum") -> STensor:
        """Accumulate over the loop: ``sum``, ``sum_last`` (also sums the last dim) or ``rms``."""
        if kind not in ACCUMULATOR_KINDS:
            raise ValueError(f"unknown accumulator {kind!r}; one of {sorted(ACCUMULATOR_KINDS)}")
        return self._op(ACCUMULATOR_KINDS[kind], (x,))

    def new_output(self, stensor: STensor, omap=None, *, output_map=None) -> None:
        omap = _map(output_map if omap is None else omap)
        self._add(infer.block_output(tuple(self._nodes), self._own(stensor), omap))

    def block_graph(self, operands: list[DTensor]) -> BlockGraph:
        """The frozen block graph with each input's ``source`` pointing into ``operands``."""
        nodes = []
        for n in self._nodes:
            if n.op == "input":
                tensor = self._sources[n.source]
                matches = [k for k, t in enumerate(operands) if t is tensor]
                if not matches:
                    raise ValueError("customized(): a block input's tensor is not among inputs")
                n = BlockNode("input", (), n.type, source=matches[0], imap=n.imap, fmap=n.fmap)
            nodes.append(n)
        return BlockGraph(self.grid, self.forloop_range, tuple(nodes))


def new_kernel_graph(target: Target = DEFAULT_TARGET) -> KNGraph:
    return KNGraph(target)


def new_threadblock_graph(grid_dim, forloop_range: int = 1) -> TBGraph:
    return TBGraph(grid_dim, forloop_range)
