"""Cut an FX graph into pieces: maximal subgraphs the builder can express, and the rest.

``probe`` tries every node on a scratch kernel graph and says which are supported (and why the
others are not). ``propose`` groups supported nodes into maximal connected subgraphs that do not
create a cycle when collapsed (torch's ``CapabilityBasedPartitioner``). ``assemble`` turns the
groups plus the remaining nodes into a new top-level ``GraphModule`` that calls one submodule per
piece, in dependency order. ``build_kernel_graph`` writes one group as a kernel graph.
"""

from __future__ import annotations

import heapq
import operator
from dataclasses import dataclass, field

import torch
from torch.fx import Graph, GraphModule, Node
from torch.fx.passes.infra.partitioner import CapabilityBasedPartitioner
from torch.fx.passes.operator_support import OperatorSupportBase

import mirage
from mirage.torch.capture import IDENTITY, Emitter, Unsupported, is_compute, value_type


def probe(gm: GraphModule) -> tuple[dict[Node, str], dict[Node, str]]:
    """(supported node -> op it becomes, unsupported compute node -> reason)."""
    em = Emitter(mirage.new_kernel_graph())
    unsupported = {}
    for node in gm.graph.nodes:
        if not is_compute(node):
            continue
        try:
            em.emit(node)
        except Unsupported as e:
            unsupported[node] = str(e)
    return {n: em.ops[n] for n in em.env}, unsupported


class _Support(OperatorSupportBase):
    def __init__(self, nodes):
        self.nodes = nodes

    def is_node_supported(self, submodules, node: Node) -> bool:
        return node in self.nodes


def propose(gm: GraphModule, supported: dict[Node, str]) -> list[list[Node]]:
    """Maximal connected groups of supported nodes, each in graph order; a group of views or
    no-op casts only computes nothing and is left to the rest."""
    partitioner = CapabilityBasedPartitioner(gm, _Support(supported),
                                             allows_single_node_partition=True)
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    groups = []
    for part in partitioner.propose_partitions():
        nodes = sorted(part.nodes, key=order.__getitem__)
        if any(supported[n] != IDENTITY for n in nodes):
            groups.append(nodes)
    return sorted(groups, key=lambda g: order[g[0]])


@dataclass
class Piece:
    """A part of the graph run by one callable: ``inputs`` are the values it reads from
    outside, ``outputs`` those used outside it, ``module`` a standalone GraphModule of it."""

    kind: str  # "subgraph" (supported group) or "rest"
    nodes: list[Node]
    inputs: list[Node] = field(default_factory=list)
    outputs: list[Node] = field(default_factory=list)
    module: GraphModule | None = None


def _pieces(gm: GraphModule, groups: list[list[Node]]) -> list[Piece]:
    """The groups, then the other compute nodes grouped by how many groups lie upstream of them:
    a path from a rest node through a group to another rest node always adds one, so no two rest
    nodes of one piece sit on either side of a group (no cycles between pieces)."""
    owner = {n: k for k, nodes in enumerate(groups) for n in nodes}
    upstream: dict[Node, frozenset] = {}
    rest: dict[int, list[Node]] = {}
    for node in gm.graph.nodes:
        ups = frozenset()
        for arg in node.all_input_nodes:
            ups |= upstream.get(arg, frozenset())
            if arg in owner:
                ups |= {owner[arg]}
        upstream[node] = ups
        if is_compute(node) and node not in owner:
            rest.setdefault(len(ups), []).append(node)
    pieces = [Piece("subgraph", nodes) for nodes in groups]
    pieces += [Piece("rest", nodes) for _, nodes in sorted(rest.items())]
    for piece in pieces:
        members = set(piece.nodes)
        piece.inputs = list(dict.fromkeys(a for n in piece.nodes for a in n.all_input_nodes
                                          if a not in members))
        piece.outputs = [n for n in piece.nodes if any(u not in members for u in n.users)]
        piece.module = _standalone(gm, piece)
    return pieces


def _standalone(gm: GraphModule, piece: Piece) -> GraphModule:
    """The piece as a GraphModule taking ``inputs`` and returning the tuple of ``outputs``."""
    graph = Graph()
    env = {a: graph.placeholder(a.name) for a in piece.inputs}
    for node in piece.nodes:
        env[node] = graph.node_copy(node, env.__getitem__)
    graph.output(tuple(env[o] for o in piece.outputs))
    return GraphModule(gm, graph)


def _dependency_order(pieces: list[Piece], order: dict[Node, int]) -> list[int]:
    """Piece indices in an order where each piece follows those it reads from (Kahn's
    algorithm, earliest first node first, so the rewritten graph reads like the original)."""
    owner = {n: k for k, p in enumerate(pieces) for n in p.nodes}
    deps = [{owner[a] for a in p.inputs if a in owner} for p in pieces]
    ready = [(order[p.nodes[0]], k) for k, p in enumerate(pieces) if not deps[k]]
    heapq.heapify(ready)
    done, result = set(), []
    while ready:
        _, k = heapq.heappop(ready)
        done.add(k)
        result.append(k)
        for j, d in enumerate(deps):
            if j not in done and k in d and d <= done and all(j != r for _, r in ready):
                heapq.heappush(ready, (order[pieces[j].nodes[0]], j))
    if len(result) != len(pieces):
        raise RuntimeError("pieces depend on each other in a cycle")
    return result


def assemble(gm: GraphModule, groups: list[list[Node]], make_callable) -> tuple[GraphModule,
                                                                                  list[Piece]]:
    """The top-level GraphModule calling ``make_callable(index, piece)`` (an ``nn.Module``)
    for each piece; placeholders and attributes stay at the top."""
    pieces = _pieces(gm, groups)
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    graph = Graph()
    env: dict[Node, Node] = {}
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "get_attr"):
            env[node] = graph.node_copy(node, env.__getitem__)
    root = torch.nn.Module()
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            _copy_attr(gm, root, node.target)
    for k in _dependency_order(pieces, order):
        piece = pieces[k]
        name = f"{'mirage' if piece.kind == 'subgraph' else 'rest'}_{k}"
        root.add_module(name, make_callable(k, piece))
        call = graph.call_module(name, tuple(env[a] for a in piece.inputs))
        for i, out in enumerate(piece.outputs):
            env[out] = graph.call_function(operator.getitem, (call, i))
    for node in gm.graph.nodes:
        if node.op == "output":
            graph.node_copy(node, env.__getitem__)
    return GraphModule(root, graph), pieces


def _copy_attr(gm: GraphModule, root: torch.nn.Module, target: str) -> None:
    *path, name = target.split(".")
    src, dst = gm, root
    for part in path:
        src = getattr(src, part)
        if not hasattr(dst, part):
            dst.add_module(part, torch.nn.Module())
        dst = getattr(dst, part)
    value = getattr(src, name)
    if isinstance(value, torch.nn.Parameter):
        dst.register_parameter(name, value)
    elif isinstance(value, torch.Tensor):
        dst.register_buffer(name, value)
    else:
        setattr(dst, name, value)


@dataclass
class Built:
    """One group as a kernel graph: ``builder`` to superoptimize, ``feed`` saying for each
    kernel-graph input which piece input it reads and the shape it is viewed as."""

    builder: object
    graph: object  # KernelGraph
    feed: list[tuple[int, tuple[int, ...]]]
    ops: list[str]


def build_kernel_graph(piece: Piece) -> Built:
    """Write ``piece`` (a supported group) with the builder; ``Unsupported`` if it cannot."""
    g = mirage.new_kernel_graph()
    em = Emitter(g)
    for node in piece.nodes:
        em.emit(node)
    for out in piece.outputs:
        if out not in em.env or em.is_input(em.env[out]):
            raise Unsupported(f"output {out.name} is an input passed through")
        value_type(out)
        g.mark_output(em.env[out])
    index = {a: i for i, a in enumerate(piece.inputs)}
    feed = [(index[node], shape) for node, shape in em.inputs]
    ops = [em.ops[n] for n in piece.nodes]
    try:
        graph = g.kernel_graph()
    except Exception as e:  # noqa: BLE001 - the builder's checks name the rule
        raise Unsupported(f"kernel graph refused: {type(e).__name__}: {e}") from None
    return Built(g, graph, feed, ops)
