"""Rewrite FX patterns that are one builder op into that op, before partitioning.

``x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)`` (how LLaMA-style RMSNorm modules are
written) becomes ``F.rms_norm(x, (n,), None, eps)``: one ``rms_norm`` op whose fused block-graph
forms the search knows, where op by op it would be six kernel ops that a small search cannot fuse.
A pattern is folded only where its intermediates are used by nothing else and the builder's
``rms_norm`` takes ``eps``.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch.fx import GraphModule, Node

import mirage
from mirage.torch.capture import meta_value


def _builder_has_rms_eps() -> bool:
    method = getattr(type(mirage.new_kernel_graph()), "rms_norm", None)
    return method is not None and "eps" in inspect.signature(method).parameters


def _call(node, names: tuple) -> bool:
    """``node`` calls one of ``names`` (a torch function, operator, or method name)."""
    if not isinstance(node, Node):
        return False
    if node.op == "call_method":
        return node.target in names
    return node.op == "call_function" and getattr(node.target, "__name__", None) in names


def _only_user(node: Node, user: Node) -> bool:
    return list(node.users) == [user]


def _square_of(node, x) -> bool:
    if _call(node, ("pow",)) and node.args[0] is x and node.args[1:] == (2,) and not node.kwargs:
        return True
    return _call(node, ("mul",)) and node.args == (x, x)


def _rms_eps(node: Node, x: Node) -> float | None:
    """eps if ``node`` is rsqrt(mean(x^2, -1, keepdim=True) + eps) used once, else None."""
    if not (_call(node, ("rsqrt",)) and len(node.args) == 1):
        return None
    add = node.args[0]
    if not (_call(add, ("add", "iadd")) and len(add.args) == 2 and _only_user(add, node)):
        return None
    mean, eps = add.args if isinstance(add.args[0], Node) else add.args[::-1]
    if not (isinstance(eps, (int, float)) and not isinstance(eps, bool) and eps >= 0):
        return None
    if not (_call(mean, ("mean",)) and _only_user(mean, add) and mean.kwargs.get("keepdim")):
        return None
    value = meta_value(x)
    dim = mean.args[1] if len(mean.args) > 1 else mean.kwargs.get("dim")
    dim = dim[0] if isinstance(dim, (list, tuple)) and len(dim) == 1 else dim
    if value is None or type(dim) is not int or dim % value.dim() != value.dim() - 1:
        return None
    square = mean.args[0]
    if not (_square_of(square, x) and _only_user(square, mean)):
        return None
    return float(eps)


def fold_rms_norm(gm: GraphModule) -> int:
    """Replace each ``x * rsqrt(mean(x^2, -1) + eps)`` in ``gm`` by ``F.rms_norm``; returns
    how many were folded."""
    if not hasattr(F, "rms_norm") or not _builder_has_rms_eps():
        return 0
    folded = 0
    for node in list(gm.graph.nodes):
        if not (_call(node, ("mul",)) and len(node.args) == 2 and not node.kwargs):
            continue
        for x, r in (node.args, node.args[::-1]):
            if not isinstance(x, Node) or not isinstance(r, Node) or not _only_user(r, node):
                continue
            eps = _rms_eps(r, x)
            if eps is None or not isinstance(meta_value(x), torch.Tensor):
                continue
            with gm.graph.inserting_before(node):
                norm = gm.graph.call_function(
                    F.rms_norm, (x, (meta_value(x).shape[-1],), None, eps))
            norm.meta.update(node.meta)
            node.replace_all_uses_with(norm)
            gm.graph.erase_node(node)
            folded += 1
            break
    if folded:  # the square, mean, add and rsqrt now feed nothing
        gm.graph.eliminate_dead_code()
        gm.recompile()
    return folded
