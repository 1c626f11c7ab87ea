"""Frozen µGraph IR: kernel graphs over device tensors, block graphs over tiles.

A ``KernelGraph`` is a tuple of nodes in topological order. Node 0..k are usually its inputs
(``op == "input"``); every other node is a pre-defined op from the registry or a graph-defined
``customized`` op that carries a ``BlockGraph``. Operands are ``Ref(node, index)``.

A ``BlockGraph`` is the body of one graph-defined kernel: a ``grid`` of thread blocks and a
for-loop of ``forloop_range`` iterations. Its nodes are block inputs (with ``imap``/``fmap``),
ops on tiles, accumulators, and outputs (with ``omap``). Every block node has one output; operands
are node indices. Types are stored on every node (tile types inside a block graph); they are
derived by ``mirage.ir.infer`` and checked by ``mirage.ir.check``.

Maps use ``None`` for "not mapped": ``imap[a]`` is the tensor dim that grid axis ``a`` splits
(``None``: replicated), ``fmap`` the dim the loop splits (``None``: whole tile every iteration),
``omap[a]`` the output dim that grid axis ``a`` places blocks along.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

DTYPE_BYTES = {"fp16": 2, "bf16": 2, "fp32": 4}
GRID_AXES = 3

Attrs = tuple[tuple[str, int], ...]
AxisMap = tuple[int | None, int | None, int | None]


@dataclass(frozen=True)
class TensorType:
    shape: tuple[int, ...]
    dtype: str = "fp16"

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * DTYPE_BYTES[self.dtype]

    def __str__(self) -> str:
        return f"{self.dtype}{list(self.shape)}"


@dataclass(frozen=True)
class Ref:
    """Output ``index`` of kernel node ``node``."""

    node: int
    index: int = 0


def attrs_of(pairs: dict | Attrs) -> Attrs:
    """Canonical (sorted, hashable) form of an op's integer attributes."""
    items = pairs.items() if isinstance(pairs, dict) else pairs
    return tuple(sorted((str(k), int(v)) for k, v in items))


@dataclass(frozen=True)
class BlockNode:
    op: str
    args: tuple[int, ...]
    type: TensorType
    attrs: Attrs = ()
    source: int | None = None  # block inputs: which operand of the customized op
    imap: AxisMap | None = None  # block inputs
    fmap: int | None = None  # block inputs
    omap: AxisMap | None = None  # block outputs

    @property
    def attr(self) -> dict[str, int]:
        return dict(self.attrs)


@dataclass(frozen=True)
class BlockGraph:
    grid: tuple[int, int, int]
    forloop_range: int
    nodes: tuple[BlockNode, ...]

    @property
    def num_blocks(self) -> int:
        return math.prod(self.grid)

    @property
    def input_ids(self) -> list[int]:
        return [i for i, n in enumerate(self.nodes) if n.op == "input"]

    @property
    def output_ids(self) -> list[int]:
        return [i for i, n in enumerate(self.nodes) if n.op == "output"]


@dataclass(frozen=True)
class KernelNode:
    op: str
    args: tuple[Ref, ...]
    outputs: tuple[TensorType, ...]
    attrs: Attrs = ()
    name: str = ""  # kernel inputs: the user's name for the tensor
    block: BlockGraph | None = None  # customized ops only

    @property
    def attr(self) -> dict[str, int]:
        return dict(self.attrs)


@dataclass(frozen=True)
class KernelGraph:
    nodes: tuple[KernelNode, ...]
    outputs: tuple[Ref, ...]
    _cache: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def type_of(self, ref: Ref) -> TensorType:
        return self.nodes[ref.node].outputs[ref.index]

    @property
    def input_ids(self) -> list[int]:
        return [i for i, n in enumerate(self.nodes) if n.op == "input"]

    @property
    def input_types(self) -> list[TensorType]:
        return [self.nodes[i].outputs[0] for i in self.input_ids]

    @property
    def output_types(self) -> list[TensorType]:
        return [self.type_of(r) for r in self.outputs]

    @property
    def customized_ids(self) -> list[int]:
        return [i for i, n in enumerate(self.nodes) if n.op == "customized"]

    @property
    def digest(self) -> str:
        """Structural hash: equal graphs (same nodes, same order) have equal digests."""
        if "digest" not in self._cache:
            from mirage.ir.serialize import graph_to_dict

            text = json.dumps(graph_to_dict(self), sort_keys=True, separators=(",", ":"))
            self._cache["digest"] = hashlib.sha256(text.encode()).hexdigest()
        return self._cache["digest"]

    def __hash__(self) -> int:
        return hash(self.digest)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KernelGraph) and self.digest == other.digest

