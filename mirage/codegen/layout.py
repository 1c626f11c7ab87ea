"""Tile layout of one block graph: what the Triton code generator needs to know before emitting.

Triton tiles must have power-of-two extents, and ``tl.dot`` needs at least 16 on each side, while a
µGraph tile may be 2 x 200. The layout answers, for every block node:

* which leading (batch) dims are dropped because every tile of the graph has extent 1 there, so
  attention tiles (1, 128, 64) become 2-D ``tl.dot`` operands and the head index moves into the
  base pointer;
* which *dim class* each remaining dim belongs to. Dims that must line up in Triton (operand and
  result of an elementwise op, the K dims of a matmul, ...) share a class, and a class has one
  padded extent: the next power of two of its true extent, at least 16 where it is a matmul dim.
  Padded elements are masked on every load and store;
* whether a node's padded elements are known to be zero (``clean``). Reductions and matmuls must
  only see zeros in padding; a value whose padding may hold anything (``exp(0) = 1``, ``0 / 0``)
  is masked with ``tl.where`` before such an op;
* whether a node runs inside the for-loop, is loop-invariant (hoisted before the loop), runs after
  the loop, or is dead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mirage.ir import BlockGraph
from mirage.ir.check import LOOP, loop_stages
from mirage.ir.infer import is_accumulator
from mirage.ops import Prop, get

DOT_MIN = 16  # tl.dot needs M, N, K >= 16


def next_pow2(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(n)))


class _UnionFind:
    def __init__(self):
        self.parent: dict = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass(frozen=True)
class DimClass:
    """Dims that share one Triton extent: ``padded`` >= ``extent``, a power of two."""

    name: str  # BLOCK_<name> in the kernel when padded > 1
    extent: int
    padded: int

    @property
    def is_padded(self) -> bool:
        return self.padded != self.extent


@dataclass(frozen=True)
class TileLayout:
    squeezed: tuple[int, ...]  # original dims dropped from every tile
    shapes: tuple[tuple[int, ...], ...]  # per node: true tile shape without squeezed dims
    classes: tuple[tuple[int, ...], ...]  # per node: class index per remaining dim
    dim_classes: tuple[DimClass, ...]
    stages: tuple[str, ...]  # per node: "loop" or "post" (mirage.ir.check.loop_stages)
    invariant: tuple[bool, ...]  # loop nodes that do not change across iterations
    live: tuple[bool, ...]  # contributes to some output
    clean: tuple[bool, ...]  # padded elements are known to be zero
    dot_nodes: tuple[int, ...]

    def padded_shape(self, j: int) -> tuple[int, ...]:
        return tuple(self.dim_classes[c].padded for c in self.classes[j])

    def padded_dims(self, j: int) -> list[int]:
        """Dims of node ``j`` whose Triton extent exceeds the true one."""
        return [d for d, c in enumerate(self.classes[j]) if self.dim_classes[c].is_padded]

    def squeeze_dim(self, dim: int, rank: int) -> int | None:
        """Position of original dim ``dim`` (of a rank-``rank`` tile) after squeezing."""
        dim %= rank
        if dim in self.squeezed:
            return None
        return dim - sum(1 for s in self.squeezed if s < dim)


def _squeezable(block: BlockGraph) -> tuple[int, ...]:
    ranks = {len(n.type.shape) for n in block.nodes}
    if len(ranks) != 1:
        return ()
    (rank,) = ranks
    return tuple(d for d in range(rank - 2) if all(n.type.shape[d] == 1 for n in block.nodes))


def _link_dims(block: BlockGraph, shapes, uf: _UnionFind, squeezed) -> list[int]:
    """Union the dims that must share an extent; return the matmul nodes."""
    dots = []
    for j, n in enumerate(block.nodes):
        out = shapes[j]
        if n.op == "input":
            continue
        if n.op == "matmul":
            a, b = n.args
            dots.append(j)
            r = len(out)
            for d in range(r - 2):
                uf.union((a, d), (j, d))
                uf.union((b, d), (j, d))
            uf.union((a, r - 2), (j, r - 2))
            uf.union((b, r - 1), (j, r - 1))
            uf.union((a, r - 1), (b, r - 2))
            continue
        if n.op == "transpose":
            rank = len(block.nodes[n.args[0]].type.shape)
            d0 = _squeeze_index(n.attr["dim0"] % rank, squeezed)
            d1 = _squeeze_index(n.attr["dim1"] % rank, squeezed)
            perm = list(range(len(out)))
            if d0 is not None and d1 is not None:
                perm[d0], perm[d1] = perm[d1], perm[d0]
            for d, src in enumerate(perm):
                uf.union((n.args[0], src), (j, d))
            continue
        # Elementwise ops, reductions, accumulators, rms_norm, outputs: dim d of an operand lines
        # up with dim d of the result wherever their extents agree (a differing extent is either
        # a broadcast or a reduced dim).
        for a in n.args:
            for d, (x, y) in enumerate(zip(shapes[a], out, strict=True)):
                if x == y:
                    uf.union((a, d), (j, d))
    return dots


def _squeeze_index(dim: int, squeezed) -> int | None:
    if dim in squeezed:
        return None
    return dim - sum(1 for s in squeezed if s < dim)


def _zero_preserving(block: BlockGraph, j: int) -> bool:
    """Does node ``j`` map all-zero operands to an all-zero result?"""
    n = block.nodes[j]
    rec = get(n.op)
    args = [np.zeros(block.nodes[a].type.shape, np.float32) for a in n.args]
    with np.errstate(all="ignore"):
        value = rec.float_fn(*args, n.attr)
        if rec.finish is not None:
            count = block.forloop_range * block.nodes[n.args[0]].type.shape[-1]
            value = rec.finish.float_fn(value, count)
    return bool(np.all(np.asarray(value) == 0))


def _needs_clean_operands(op: str) -> bool:
    """Ops that combine elements across a dim (matmul, reductions) must not see padding."""
    rec = get(op)
    return not (rec.has(Prop.ELEMENTWISE) or rec.has(Prop.VIEW) or rec.has(Prop.IO))


def analyze(block: BlockGraph, names: list[str]) -> TileLayout:
    """The layout of ``block``; ``names[k]`` names the kernel tensor behind operand ``k``."""
    stages, errors = loop_stages(block)
    if errors:
        raise errors[0]
    squeezed = _squeezable(block)
    shapes = tuple(
        tuple(e for d, e in enumerate(n.type.shape) if d not in squeezed) for n in block.nodes
    )
    uf = _UnionFind()
    for j, s in enumerate(shapes):
        for d in range(len(s)):
            uf.find((j, d))
    dots = _link_dims(block, shapes, uf, squeezed)

    roots: dict = {}
    for j, s in enumerate(shapes):
        for d in range(len(s)):
            roots.setdefault(uf.find((j, d)), []).append((j, d))
    needs_dot = set()
    for j in dots:
        r = len(shapes[j])
        a, b = block.nodes[j].args
        for item in ((a, r - 2), (a, r - 1), (b, r - 1)):
            needs_dot.add(uf.find(item))

    dim_classes: list[DimClass] = []
    class_of: dict = {}
    used_names: set[str] = set()
    for root in sorted(roots, key=lambda r: min(roots[r])):
        members = roots[root]
        extents = {shapes[j][d] for j, d in members}
        assert len(extents) == 1, f"dims {members} of different extents were linked"
        (extent,) = extents
        padded = next_pow2(extent)
        if root in needs_dot:
            padded = max(padded, DOT_MIN)
        name = _class_name(block, names, members, squeezed, used_names)
        class_of[root] = len(dim_classes)
        dim_classes.append(DimClass(name, extent, padded))
    classes = tuple(
        tuple(class_of[uf.find((j, d))] for d in range(len(s))) for j, s in enumerate(shapes)
    )

    live = [False] * len(block.nodes)
    for j in reversed(range(len(block.nodes))):
        if block.nodes[j].op == "output":
            live[j] = True
        if live[j]:
            for a in block.nodes[j].args:
                live[a] = True

    invariant = []
    for j, n in enumerate(block.nodes):
        if stages[j] != LOOP:
            invariant.append(False)
        elif n.op == "input":
            invariant.append(n.fmap is None or block.forloop_range == 1)
        else:
            invariant.append(all(invariant[a] for a in n.args))

    clean = []
    for j, n in enumerate(block.nodes):
        if n.op == "input":
            clean.append(True)
        elif n.op == "output":
            clean.append(clean[n.args[0]])
        else:
            operands_clean = _needs_clean_operands(n.op) or all(clean[a] for a in n.args)
            # An operand broadcast along a padded dim of the result puts real values there.
            broadcast_into_padding = any(
                shapes[a][d] == 1 < shapes[j][d] and dim_classes[classes[j][d]].is_padded
                for a in n.args if len(shapes[a]) == len(shapes[j])
                for d in range(len(shapes[j]))
            )
            clean.append(operands_clean and not broadcast_into_padding
                         and _zero_preserving(block, j))
    return TileLayout(
        squeezed=squeezed,
        shapes=shapes,
        classes=classes,
        dim_classes=tuple(dim_classes),
        stages=tuple(stages),
        invariant=tuple(invariant),
        live=tuple(live),
        clean=tuple(clean),
        dot_nodes=tuple(dots),
    )


def _class_name(block: BlockGraph, names, members, squeezed, used: set[str]) -> str:
    """``<TENSOR><dim>`` of the first block input in the class, e.g. ``W1``; else ``D<k>``."""
    for j, d in sorted(members):
        n = block.nodes[j]
        if n.op == "input":
            orig = [k for k in range(len(n.type.shape)) if k not in squeezed][d]
            stem = names[n.source].upper()
            base = f"{stem}_{orig}" if stem[-1].isdigit() else f"{stem}{orig}"
            break
    else:
        base = f"D{len(used)}"
    name, k = base, 2
    while name in used:
        name, k = f"{base}_{k}", k + 1
    used.add(name)
    return name


def is_accumulator_node(block: BlockGraph, j: int) -> bool:
    return is_accumulator(block.nodes[j].op)
