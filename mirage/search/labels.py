"""Dimension labels: which dims of which tensors index the same thing.

The search derives grids, loops and maps from the program's shapes, not from per-benchmark
tables. To do so it labels every dim of every program tensor and unifies labels the way the ops
relate them: a matmul's contraction dims share a label, its batch dims share labels, elementwise
operands share labels dim by dim (size-1 broadcast dims excepted), a transpose swaps them. A
label is *reduced* when some op sums over it (matmul contraction, ``reduce_sum``, the mean of
``rms_norm``). A block graph may split a label across blocks (imap) or walk it in its loop
(fmap); every operand dim carrying that label is mapped alike.

A dim's label is a tuple of factors ``((label, extent), ...)``, outermost first: program dims
have one factor; a block output that concatenates the partial results of blocks along a dim
gets the split label as an extra outer factor.
"""

from __future__ import annotations

from dataclasses import dataclass

from mirage.ir import KernelGraph, Ref
from mirage.ops import Prop, get
from mirage.ops.registry import reduced_dim

Factor = tuple[str, int]  # (label, extent)
DimLabel = tuple[Factor, ...]


class _UnionFind:
    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass(frozen=True)
class ProgramLabels:
    """Labels of the program's inputs and outputs, and which labels are reduced."""

    inputs: tuple[tuple[DimLabel, ...], ...]
    outputs: tuple[tuple[DimLabel, ...], ...]
    reduced: frozenset[str]
    extents: dict[str, int]

    @property
    def output_labels(self) -> frozenset[str]:
        return frozenset(f[0] for out in self.outputs for dim in out for f in dim if f[1] > 1)

    @property
    def batch_labels(self) -> frozenset[str]:
        """Labels that every input and output carries: independent problems (heads, batch)."""
        sets = [frozenset(f[0] for d in t for f in d if f[1] > 1)
                for t in (*self.inputs, *self.outputs)]
        common = frozenset.intersection(*sets) if sets else frozenset()
        return common - self.reduced


def label_program(graph: KernelGraph) -> ProgramLabels:
    uf = _UnionFind()
    dims: dict[Ref, list[str]] = {}
    reduced: set[str] = set()
    extents: dict[str, int] = {}
    fresh = iter(f"L{i}" for i in range(10_000))

    def new(extent: int) -> str:
        name = next(fresh)
        extents[name] = extent
        return name

    for i, node in enumerate(graph.nodes):
        shapes = [graph.type_of(r).shape for r in node.args]
        args = [dims[r] for r in node.args]
        out_shape = node.outputs[0].shape
        if node.op == "input":
            out = [new(n) for n in out_shape]
        elif node.op == "matmul":
            a, b = args
            for x, y in zip(a[:-2], b[:-2], strict=True):
                uf.union(x, y)
            uf.union(a[-1], b[-2])
            reduced.add(a[-1])
            out = [*a[:-1], b[-1]]
        elif node.op != "customized" and reduced_dim(get(node.op), node.attr,
                                                    len(out_shape)) is not None:
            d = reduced_dim(get(node.op), node.attr, len(out_shape))
            reduced.add(args[0][d])
            out = list(args[0])
            out[d] = new(1)
        elif node.op == "transpose":
            out = list(args[0])
            d0, d1 = node.attr["dim0"] % len(out), node.attr["dim1"] % len(out)
            out[d0], out[d1] = out[d1], out[d0]
        elif len(args) == 2:  # elementwise binary with broadcasting
            out = []
            for x, y, sx, sy in zip(*args, *shapes, strict=True):
                if sx > 1 and sy > 1:
                    uf.union(x, y)
                out.append(x if sx >= sy else y)
        else:  # unary elementwise (numbers included), rms_norm
            out = list(args[0])
            if node.op != "customized" and get(node.op).has(Prop.NORM):
                reduced.add(out[-1])
        dims[Ref(i)] = out

    def labelled(names: list[str], shape) -> tuple[DimLabel, ...]:
        return tuple(((uf.find(n), size),) for n, size in zip(names, shape, strict=True))

    inputs = tuple(labelled(dims[Ref(i)], graph.nodes[i].outputs[0].shape)
                   for i in graph.input_ids)
    outputs = tuple(labelled(dims[r], graph.type_of(r).shape) for r in graph.outputs)
    roots = {uf.find(n) for n in extents}
    return ProgramLabels(
        inputs,
        outputs,
        frozenset(uf.find(n) for n in reduced),
        {r: max(extents[n] for n in extents if uf.find(n) == r) for r in roots},
    )
