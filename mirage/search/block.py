"""Block-level search: grow the body of one graph-defined kernel under a fixed layout.

Starting from the layout's input tiles, each step appends one op — an op on in-loop tiles, an
accumulator, or an op after the loop — and keeps the prefix only if every filter passes (each
counts what it rejects, see ``Stats``):

* ``shape``: the op's shape rule (via ``mirage.ir.infer``);
* ``expression``: the new tile's abstract expression is a subexpression of a target output;
* ``duplicate``: an equal expression of the same shape and stage exists already;
* ``atoms``: the target's functions (an RMS, an exp …) not yet computed outnumber the ops left
  (an op applies at most one new function or divisor; see ``_goal``);
* canonical order: an op must use the previous op's result or sort after it (this removes
  permutations of independent ops; such ops are never generated, so nothing is counted);
* ``unreachable``: more values are left unconsumed than the remaining ops can fold into the
  outputs (each op consumes at most two and produces one);
* ``same-state``: another order of the same ops reached an equal set of tiles already.

Whole searches are skipped where no body could be of use: a divisor's kernel whose operands
cannot compute a divisor, and a layout that splits a reduction when the targets cannot be
computed from partial sums alone (``reach``, counted once).

A body is *complete* when a post-loop tile equals a target output (one output, fused) — for a
program with several outputs, when its post-loop sinks are the targets, one each, written in the
program's order — or, under a layout that splits a reduced label across blocks, when its post-loop
sinks are partial results a later kernel combines.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from dataclasses import dataclass, field

from mirage.expr import Mono, Poly, atoms_of, is_reachable, is_subexpression, normalize
from mirage.expr.normal import atom_poly
from mirage.ir import BlockGraph, BlockNode, IRError, infer
from mirage.ir.check import LOOP, POST
from mirage.ops import REGISTRY, Level, Prop, Term
from mirage.ops.registry import SCALAR_ATTRS, reduced_dim
from mirage.search.labels import DimLabel
from mirage.search.layouts import Layout, Operand
from mirage.semantics import ExprSemantics

SPLIT_DEPTH = 2  # where ``BlockSearch.run`` cuts the tree into parts
# Ops whose result is an opaque function of its operand (exp, sqrt, reduce_max …): tried only
# where the target applies that function.
FUNCTIONS = frozenset(n for n, r in REGISTRY.items()
                      if r.has(Prop.ATOM) and Level.BLOCK in r.levels)
# Ops that carry a number (x * 0.125, rms_norm with eps): tried with the target's numbers.
SCALAR_OPS = frozenset(n for n, r in REGISTRY.items()
                       if r.attrs == SCALAR_ATTRS and Level.BLOCK in r.levels)
_EXPR = ExprSemantics()
_SUM_FINISH = REGISTRY["accum_sum"].finish.expr_fn


@dataclass
class Stats:
    """What the search did: states explored and rejections per filter."""

    explored: int = 0
    rejected: Counter = field(default_factory=Counter)
    completed: int = 0

    def merge(self, other: Stats) -> None:
        self.explored += other.explored
        self.rejected.update(other.rejected)
        self.completed += other.completed


@dataclass(frozen=True)
class BlockResult:
    """A complete body: the block graph, its outputs' labels, and whether it is final (its
    single output is the program's output) or not: partial results a later kernel combines, or
    (``keeps_inputs``) a divisor of the target computed once, which a later kernel reads next to
    the program's inputs (the RMS of each row of X, say)."""

    block: BlockGraph
    output_labels: tuple[tuple[DimLabel, ...], ...]
    final: bool
    keeps_inputs: bool = False

    @property
    def sources(self) -> tuple[int, ...]:
        """The operands the kernel reads, in order (a subset for a divisor's kernel)."""
        return tuple(n.source for n in self.block.nodes if n.op == "input")

    @property
    def steps(self) -> tuple:
        """The body as layout-free steps: (op, args, attrs) per op, then the output sinks."""
        ops = tuple((n.op, n.args, n.attrs) for n in self.block.nodes
                    if n.op not in ("input", "output"))
        sinks = tuple(n.args[0] for n in self.block.nodes if n.op == "output")
        return ops, sinks


def instantiate(steps: tuple, operands: list[Operand], layout: Layout, final: bool,
                keeps_inputs: bool = False, sources: list[int] | None = None
                ) -> BlockResult | None:
    """The body ``steps`` (found under another layout of the same class) under ``layout``;
    None when a shape rule fails at these extents."""
    ops, sinks = steps
    nodes, labels = [], []
    try:
        for k, (op, imap, fmap) in enumerate(zip(operands, layout.imaps, layout.fmaps,
                                                 strict=True)):
            source = k if sources is None else sources[k]
            nodes.append(infer.block_input(op.type, source, layout.grid, layout.forloop_range,
                                           imap, fmap))
            labels.append(op.labels)
        for op, args, attrs in ops:
            shapes = [nodes[a].type.shape for a in args]
            nodes.append(infer.block_op(tuple(nodes), op, args, attrs))
            labels.append(_label_op(op, [labels[a] for a in args], dict(attrs), shapes))
        out_labels = []
        for i in sinks:
            omap, out = _omap(labels[i], layout, nodes[i].type.shape)
            if omap is None:
                return None
            nodes.append(infer.block_output(tuple(nodes), i, omap))
            out_labels.append(out)
    except IRError:
        return None
    block = BlockGraph(layout.grid, layout.forloop_range, tuple(nodes))
    return BlockResult(block, tuple(out_labels), final, keeps_inputs)


@dataclass
class _State:
    nodes: list[BlockNode]
    terms: list[Term]
    polys: list[Poly]
    labels: list[tuple[DimLabel, ...]]
    stages: list[str]
    last_key: tuple
    ops: int
    atoms: frozenset = frozenset()  # the functions and divisors the tiles hold, at any depth


def _label_op(op: str, args: list[tuple[DimLabel, ...]], attrs: dict, shapes) -> tuple:
    """Labels of an op's result, mirroring ``labels.label_program`` at the tile level."""
    first = args[0]
    if op == "matmul":
        return (*first[:-1], args[1][-1])
    d = reduced_dim(REGISTRY[op], attrs, len(first))
    if d is not None:
        return (*first[:d], (("", 1),), *first[d + 1 :])
    if op == "transpose":
        out = list(first)
        d0, d1 = attrs["dim0"] % len(out), attrs["dim1"] % len(out)
        out[d0], out[d1] = out[d1], out[d0]
        return tuple(out)
    if len(args) == 2:
        return tuple(x if sx >= sy else y for x, y, sx, sy in zip(
            args[0], args[1], shapes[0], shapes[1], strict=True))
    return first


class BlockSearch:
    """Depth-first enumeration of block bodies for one layout."""

    def __init__(self, operands: list[Operand], operand_terms: list[Term], layout: Layout,
                 targets: list[Poly], max_ops: int, stats: Stats, use_pruning: bool = True,
                 deadline: float = float("inf"), reduced: frozenset[str] | None = None,
                 sources: list[int] | None = None, transposes: bool = True):
        self.operands, self.layout, self.targets = operands, layout, targets
        # Abstract expressions do not see layouts, so transposes pass every expression filter.
        # When the program has none, its inputs and output are in one orientation and any body
        # with transposes has one without and no more ops ((A B)^T = B^T A^T, pairs cancel),
        # so transposes are tried only when the program transposes something.
        self.transposes = transposes
        self.reduced = reduced
        # With ``sources`` the operands are a subset of the kernel's live tensors (their
        # indices): the body may only compute a divisor of the target, once, for a later
        # kernel to divide by (``BlockResult.keeps_inputs``).
        self.sources = sources
        self.divisors = divisors(targets) if sources is not None else set()
        self.max_ops, self.stats, self.use_pruning = max_ops, stats, use_pruning
        self.deadline = deadline
        self.vocabulary = _vocabulary(targets)
        self.constants = _constants(targets)
        self.whole_parts = _whole_parts(targets)
        self.groups = self._groups()
        self._inferred: dict[tuple, BlockNode | None] = {}
        nodes, labels = [], []
        for k, (op, imap, fmap) in enumerate(zip(operands, layout.imaps, layout.fmaps,
                                                 strict=True)):
            source = k if sources is None else sources[k]
            node = infer.block_input(op.type, source, layout.grid, layout.forloop_range, imap,
                                     fmap)
            nodes.append(node)
            labels.append(op.labels)
        polys = [normalize(t) for t in operand_terms]
        # Only divisors these operands can compute (the RMS of a row of X needs X) and that
        # read all of them: every operand must be read, and no op drops a variable of an operand
        # from its result (nothing cancels), so each operand's variables end up in the divisor.
        read = variables(polys)
        self.divisors = {d for d in self.divisors
                         if read <= variables([d]) and is_reachable(d, tuple(polys))}
        # what each way to complete must compute (none for partial results: their parts are
        # sums, not functions)
        goals = self.divisors if sources is not None else () if layout.split_label else targets
        post_ops = layout.split_label is None and layout.forloop_range > 1
        self.goals = [_goal(g, post_ops) for g in goals]
        if len(self.goals) > 1 and sources is None and not layout.split_label:
            # several program outputs, all written by this body: it makes every function
            self.goals = [(frozenset().union(*(f for f, _ in self.goals)),
                           any(last for _, last in self.goals))]
        self.root = _State(nodes, list(operand_terms), polys, labels, [LOOP] * len(nodes), (), 0,
                           frozenset().union(*map(_functions, polys)))
        # outputs a complete body writes: partial results (at most two), one divisor, or one
        # per program output (a program with several outputs is fused into one kernel)
        self._outputs = 2 if layout.split_label else 1 if sources is not None else len(targets)

    def run(self, part: int = 0, parts: int = 1):
        """Yield every complete body (``BlockResult``).

        With ``parts > 1`` the tree is cut at depth ``SPLIT_DEPTH``: every part walks the trunk
        above it (the same way, so it numbers the subtrees the same way) and searches only the
        subtrees numbered ``part`` modulo ``parts``; the trunk's bodies and counts belong to
        part 0. The union over all parts holds every body the whole search finds.
        """
        if self.sources is not None and not self.divisors:
            return  # a divisor's kernel that cannot compute any divisor
        if self.use_pruning and self.layout.split_label and not self._partials_may_reach():
            self.stats.rejected["reach"] += 1  # the whole layout: see kernel.KernelSearch
            return
        stack = [(self.root, 0)]
        seen_results = set()
        seen_states = set()
        subtrees = 0
        counted = self.stats
        while stack:
            if counted.explored % 256 == 0 and time.monotonic() > self.deadline:
                return  # the time budget is spent: the caller sees the deadline passed
            state, depth = stack.pop()
            trunk = parts > 1 and depth < SPLIT_DEPTH
            self.stats = counted if (part == 0 or not trunk) else Stats()
            # Equal tiles reached by different ops merge. Which tiles are still unread stays in
            # the key (it decides what can still complete in the ops left: merging a state
            # with more unread tiles into one with fewer loses bodies), and so does the last op
            # with its operands' values, because the canonical order of what may follow
            # depends on it.
            used = {a for nd in state.nodes for a in nd.args}
            tiles = zip(state.stages, state.polys, (n.type for n in state.nodes),
                        (i in used for i in range(len(state.nodes))), strict=True)
            last_args = tuple(state.polys[a] for a in state.last_key[2]) \
                if state.last_key else ()
            signature = (frozenset(Counter(tiles).items()),
                         state.last_key[:2], state.polys[-1], last_args)
            if signature in seen_states:
                self.stats.rejected["same-state"] += 1
                continue
            seen_states.add(signature)
            if parts > 1 and depth == SPLIT_DEPTH:
                subtrees += 1
                if (subtrees - 1) % parts != part:
                    continue
            self.stats.explored += 1
            if part == 0 or not trunk:
                for result in self._completions(state):
                    key = result.block
                    if key not in seen_results:
                        seen_results.add(key)
                        self.stats.completed += 1
                        yield result
            if state.ops < self.max_ops:
                stack.extend((child, depth + 1) for child in reversed(list(self._children(state))))
        self.stats = counted

    # --- growing ------------------------------------------------------------------------------

    def _groups(self) -> list[tuple[bool, str]]:
        """(after the loop?, op) pairs to try, in canonical order."""
        split = self.layout.split_label is not None
        groups = []
        for op in sorted(self.vocabulary | ({"transpose"} if self.transposes else set())):
            rec = REGISTRY[op]
            if rec.has(Prop.ACCUMULATOR):
                if not split or rec.finish.expr_fn is _SUM_FINISH:
                    groups.append((True, op))
                continue
            groups.append((False, op))
            # Under a split layout the outputs are partial sums a later kernel adds up: only
            # plain sums may sit between the loop and the outputs (nothing else commutes with
            # that addition). Without a loop (one iteration) an op after the accumulators
            # computes what the same op before them would, so only the in-loop form is tried.
            if not split and self.layout.forloop_range > 1:
                groups.append((True, op))
        return sorted(groups)

    @staticmethod
    def _args(op: str, ids: list[int], only: int | None, dangling: set[int], need: int):
        """Operand tuples for ``op`` over ``ids``; with ``only``, just those that use it; each
        tuple consumes at least ``need`` distinct dangling values."""
        rec = REGISTRY[op]
        if rec.arity == 1:
            return [(i,) for i in ids if (only is None or i == only)
                    and (need <= 0 or (need == 1 and i in dangling))]
        if need >= 2:
            ids = [i for i in ids if i in dangling]
        commutative = rec.has(Prop.COMMUTATIVE)
        out = []
        for i in ids:
            for j in ids:
                if commutative and i > j:
                    continue
                if only is not None and only not in (i, j):
                    continue
                if need == 1 and i not in dangling and j not in dangling:
                    continue
                if need >= 2 and i == j:
                    continue
                out.append((i, j))
        return out

    def _candidates(self, state: _State, remaining: int, outputs: int):
        """Canonical next ops: those using the last result, or sorting after the last op; and
        only operand tuples that leave the outputs reachable in the ops that remain."""
        n = len(state.nodes)
        last = n - 1
        loop = [i for i in range(n) if state.stages[i] == LOOP]
        post = [i for i in range(n) if state.stages[i] == POST]
        used = {a for nd in state.nodes for a in nd.args}
        loose = {i for i in loop if i not in used}
        unread_post = {i for i in post if i not in used}
        last_group, last_args = state.last_key[:2], state.last_key[2:]
        for group in self.groups:
            is_post, op = group
            rec = REGISTRY[op]
            from_loop = rec.has(Prop.ACCUMULATOR) or not is_post
            ids = loop if from_loop else post
            need = _consumption_needed(len(loose), len(unread_post), from_loop, is_post,
                                       rec.arity, remaining, outputs)
            if need is None:
                self.stats.rejected["unreachable"] += 1
                continue
            dangling = loose if from_loop else unread_post
            if last_group and group < last_group:
                arg_list = self._args(op, ids, last, dangling, need)
            elif last_group and group == last_group:
                arg_list = [a for a in self._args(op, ids, None, dangling, need)
                            if last in a or a >= last_args[0]]
            else:
                arg_list = self._args(op, ids, None, dangling, need)
            for args in arg_list:
                for attrs in self._attrs(op, state, args):
                    if (last_group and group == last_group and args == last_args[0]
                            and _attrs_key(attrs) <= last_args[1]):
                        continue  # the same op on the same operands: numbers in order
                    yield POST if is_post else LOOP, op, args, attrs

    def _attrs(self, op: str, state: _State, args) -> list[dict]:
        """The attribute choices for ``op`` on ``args``: reductions over the last dim, the
        target's numbers for an op that carries one."""
        rank = len(state.nodes[args[0]].type.shape)
        rec = REGISTRY[op]
        if op == "transpose":
            return [{"dim0": rank - 2, "dim1": rank - 1}] if rank >= 2 else []
        if rec.attrs == SCALAR_ATTRS:
            return [dict(a) for a in self.constants]
        if rec.attrs == ("dim",):
            return [{"dim": rank - 1}]
        return [{}]

    def _children(self, state: _State):
        remaining = self.max_ops - state.ops - 1
        outputs = self._outputs
        for stage, op, args, attrs in self._candidates(state, remaining, outputs):
            key = (stage == POST, op, args, _attrs_key(attrs))
            node = self._block_op(state.nodes, op, args, attrs)
            if node is None:
                self.stats.rejected["shape"] += 1
                continue
            shapes = [state.nodes[a].type.shape for a in args]
            if self.use_pruning and self.reduced is not None and not self._reduces_allowed(
                    op, [state.labels[a] for a in args], shapes):
                self.stats.rejected["label"] += 1
                continue
            term = _apply_expr(op, [state.terms[a] for a in args], attrs, shapes, self.layout)
            poly = normalize(term)
            if self.use_pruning and not any(is_subexpression(poly, t) for t in self.targets):
                self.stats.rejected["expression"] += 1
                continue
            if any(p == poly and s == stage and nd.type == node.type
                   for p, s, nd in zip(state.polys, state.stages, state.nodes, strict=True)):
                self.stats.rejected["duplicate"] += 1
                continue
            atoms = state.atoms | _functions(poly)
            if self.use_pruning and self.goals and all(
                    _ops_to_make(functions, atoms, last_makes) > remaining
                    for functions, last_makes in self.goals):
                self.stats.rejected["atoms"] += 1
                continue
            labels = _label_op(op, [state.labels[a] for a in args], attrs, shapes)
            yield _State(state.nodes + [node], state.terms + [term], state.polys + [poly],
                         state.labels + [labels], state.stages + [stage], key, state.ops + 1,
                         atoms)

    def _reduces_allowed(self, op: str, arg_labels: list, shapes: list) -> bool:
        """Does ``op`` pair dims that carry the same label, and sum only over labels the
        program reduces (or over unit dims)?

        Abstract sums record how many terms they add, not which dims: summing a tile over an
        output dim can match a target's sum size by coincidence (a 64-wide partial of X W1
        reduced over its 64 columns looks like a 64-term piece of the contraction). No
        equivalent µGraph sums over a dim the program keeps, so such ops are not generated;
        nor ones that multiply, add or contract two different dims that happen to have the same
        extent (square weights make those shape-correct).
        """
        rec = REGISTRY[op]
        if rec.has(Prop.ELEMENTWISE) and rec.arity == 2:
            # elementwise across two different dims (equal extents, different labels) pairs up
            # indices the program never pairs
            return all(a[0][0] == b[0][0] for a, b, sa, sb in zip(
                arg_labels[0], arg_labels[1], shapes[0], shapes[1], strict=True)
                if sa > 1 and sb > 1)
        if op == "matmul":
            if shapes[1][-2] > 1 and arg_labels[0][-1][0][0] != arg_labels[1][-2][0][0]:
                return False  # contracts two different dims
            factors, size = arg_labels[0][-1], shapes[0][-1]
        elif rec.has(Prop.NORM) or reduced_dim(rec, {"dim": -1}, len(shapes[0])) is not None:
            factors, size = arg_labels[0][-1], shapes[0][-1]
        else:
            return True
        if size == 1:
            return True
        name = factors[0][0]
        return name.removeprefix("split:") in self.reduced or not name

    def _block_op(self, nodes: list[BlockNode], op: str, args, attrs: dict) -> BlockNode | None:
        """``infer.block_op``, memoised on what its result depends on (op, operand types,
        attributes); None where the shape rule fails."""
        types = tuple(nodes[a].type for a in args)
        key = (op, types, tuple(sorted(attrs.items())))
        if key not in self._inferred:
            stand_ins = tuple(BlockNode("input", (), t) for t in types)
            try:
                self._inferred[key] = infer.block_op(stand_ins, op, tuple(range(len(types))),
                                                     attrs)
            except IRError:
                self._inferred[key] = None
        found = self._inferred[key]
        return None if found is None else BlockNode(op, tuple(args), found.type, found.attrs)

    # --- completing ---------------------------------------------------------------------------

    def _completions(self, state: _State):
        if not state.nodes or state.stages[-1] != POST:
            return
        used = {a for nd in state.nodes for a in nd.args}
        last = len(state.nodes) - 1
        if any(i not in used for i in range(len(self.operands))):
            return  # every operand must be read
        sinks = [i for i in range(len(state.nodes)) if i not in used]
        if any(state.stages[i] == LOOP for i in sinks):
            return  # dead in-loop work
        if self.sources is not None:  # a divisor's kernel: nothing else completes here
            if (self.layout.split_label is None and sinks == [last]
                    and state.polys[last] in self.divisors):
                if self._varies_along_reduced(state.labels[last]):
                    self.stats.rejected["label"] += 1
                    return
                built = self._with_outputs(state, [last], keeps_inputs=True)
                if built is not None:
                    yield built
            return
        if self.layout.split_label is None:
            if len(self.targets) > 1:
                order = self._in_target_order(state, sinks) if last in sinks else None
                built = None if order is None else self._with_outputs(state, order)
                if built is not None:
                    yield built
            elif sinks == [last] and state.polys[last] in self.targets:
                built = self._with_outputs(state, [last])
                if built is not None:
                    yield built
        elif len(sinks) <= 2 and all(self._adds_up(state.polys[i]) for i in sinks):
            built = self._with_outputs(state, sinks)
            if built is not None:
                yield built

    def _in_target_order(self, state: _State, sinks: list[int]) -> list[int] | None:
        """The sinks ordered as the program's outputs, when each sink is one target (several
        outputs, written by one kernel); else None."""
        if len(sinks) != len(self.targets):
            return None
        order, free = [], list(sinks)
        for target in self.targets:
            match = next((i for i in free if state.polys[i] == target), None)
            if match is None:
                return None
            order.append(match)
            free.remove(match)
        return order

    def _varies_along_reduced(self, labels: tuple[DimLabel, ...]) -> bool:
        """Does a tile carry a label the program reduces? A divisor (the RMS of a row) is one
        value per reduced row; a tile that still runs along the row has broadcast a sum back
        over the dim it summed (``x_j * sum_i x_i``, whose normal form is that of
        ``sum_i x_i * x_i``), not computed the divisor."""
        return self.reduced is not None and any(
            f[0] in self.reduced and f[1] > 1 for d in labels for f in d)

    def _partials_may_reach(self) -> bool:
        """Can the targets still be computed from partial results alone? A kernel that splits
        a reduction leaves only its partial sums to later kernels (``kernel.extend``); if not
        even all the partial sums ``_adds_up`` accepts could give back a target (its
        element-wise inputs are gone, ``is_reachable``), no body of this layout is of use."""
        splits = dict(zip(self.layout.grid_labels, self.layout.grid, strict=True))
        whole = splits[self.layout.split_label]
        parts = Poly(tuple(sorted(Mono(m.size // whole, m.num, m.den, m.sign)
                                  for m in self.whole_parts if m.size % whole == 0)))
        return all(is_reachable(t, (parts,)) for t in self.targets)

    def _adds_up(self, partial: Poly) -> bool:
        """Do the blocks' partial results of ``partial`` add up to a whole part of a target
        (a term's numerator, a divisor, or an opaque function's argument)?"""
        splits = dict(zip(self.layout.grid_labels, self.layout.grid, strict=True))
        whole = splits[self.layout.split_label]
        scaled = tuple(Mono(m.size * whole, m.num, m.den, m.sign) for m in partial.terms)
        return all(t in self.whole_parts for t in scaled)

    def _with_outputs(self, state: _State, sinks: list[int], keeps_inputs: bool = False
                      ) -> BlockResult | None:
        nodes = list(state.nodes)
        out_labels = []
        for i in sinks:
            omap, labels = _omap(state.labels[i], self.layout, nodes[i].type.shape)
            if omap is None:
                return None
            try:
                nodes.append(infer.block_output(tuple(nodes), i, omap))
            except IRError:
                return None
            out_labels.append(labels)
        block = BlockGraph(self.layout.grid, self.layout.forloop_range, tuple(nodes))
        final = self.layout.split_label is None and not keeps_inputs
        return BlockResult(block, tuple(out_labels), final, keeps_inputs)


def _ops_needed(loose: int, unread_post: int, outputs: int) -> int:
    """A lower bound on the ops that fold ``loose`` unread in-loop values and ``unread_post``
    unread post-loop values into ``outputs`` outputs.

    In-loop values can only leave the loop through an accumulator, and each op folds at most one
    of them away (a binary op merges two into one, an accumulator moves one after the loop);
    values after the loop then merge pairwise. That is at least L + max(0, P + 1 - outputs) ops
    when L > 0, and P - outputs when L = 0.
    """
    if loose:
        return loose + max(0, unread_post + 1 - outputs)
    return max(0, unread_post - outputs)


def _consumption_needed(loose: int, unread_post: int, from_loop: bool, is_post: bool,
                        arity: int, remaining: int, outputs: int) -> int | None:
    """How many unread values (of the kind the op reads) the next op must consume so that
    ``_ops_needed`` still fits in the ``remaining`` ops after it; None if no choice does (the
    ``unreachable`` filter, applied before any operand tuple is built)."""
    for consumed in range(arity + 1):
        loop_after = loose - (consumed if from_loop else 0) + (not is_post)
        post_after = unread_post - (0 if from_loop else consumed) + is_post
        if min(loop_after, post_after) >= 0 and \
                _ops_needed(loop_after, post_after, outputs) <= remaining:
            return consumed
    return None


def _omap(tile_labels: tuple[DimLabel, ...], layout: Layout, shape) -> tuple:
    """Place each grid axis on the output dim carrying its label; a split (reduced) label goes
    on the last dim, concatenating the blocks' partial results."""
    omap: list[int | None] = []
    labels = list(tile_labels)
    for lab, size in zip(layout.grid_labels, layout.grid, strict=True):
        if size == 1:
            omap.append(None)
            continue
        dims = [d for d, factors in enumerate(tile_labels) if factors[0][0] == lab]
        if lab == layout.split_label:
            d = len(shape) - 1
            labels[d] = ((f"split:{lab}", size), *labels[d])
        elif dims:
            d = dims[0]  # labels carry full extents: the output dim is the whole label again
        else:
            return None, None
        if d in omap:
            return None, None
        omap.append(d)
    return tuple(omap), tuple(labels)


def _apply_expr(op, arg_terms: list[Term], attrs, shapes, layout: Layout) -> Term:
    """The abstract expression of a new block node, from the op record's meaning (the same
    rule ``mirage.semantics`` applies to a whole graph)."""
    rec = REGISTRY[op]
    term = rec.expr_fn(arg_terms, attrs, shapes)
    if rec.has(Prop.ACCUMULATOR):
        count = layout.forloop_range * shapes[0][-1]
        term = rec.finish.expr_fn(_EXPR.loop_total(layout.forloop_range, term), count)
    return term


def _vocabulary(targets: list[Poly]) -> set[str]:
    """Ops worth trying for these targets: an op whose result can never be a subexpression
    (no exp in the target: no exp op) is not generated at all. Equivalent to pruning it."""
    heads = {a.head for t in targets for a in atoms_of(t)}
    terms = [m for t in targets for m in t.terms]
    vocab = {"mul", "accum_sum"}
    vocab |= {h for h in heads if h in FUNCTIONS}
    if "sqrt" in heads:
        vocab |= {"rms_norm", "accum_rms_last", "square"}
    if "const" in heads:
        vocab |= SCALAR_OPS - (set() if "sqrt" in heads else {"rms_norm_eps"})
        if "sqrt" in heads:  # an RMS with an eps, over a loop: mean(x^2), + eps, sqrt
            vocab |= {"accum_ms_last", "sqrt"}
    if "exp" in heads:
        vocab.add("accum_sum_last")
    if any(len(t.terms) > 1 for t in targets) or any(
        a.arg is not None and len(a.arg.terms) > 1 for t in targets for a in atoms_of(t)
    ):
        vocab |= {"add", "sub"}
    if any(m.den for t in targets for m in t.terms) or "poly" in heads:
        vocab.add("div")
    if any(m.size > 1 for m in terms) or any(
        a.arg is not None and any(m.size > 1 for m in a.arg.terms)
        for t in targets for a in atoms_of(t)
    ):
        vocab |= {"matmul", "reduce_sum", "accum_sum_last"}
    if any(m.size > 1 and any(a.head == "const" for a in m.den) for m in _all_terms(targets)):
        vocab.add("reduce_mean")  # a sum divided by a number: a mean (``mean_of``)
    return vocab


def _all_terms(targets: list[Poly]):
    """Every term of the targets and of the polynomials inside their atoms, at any depth."""
    stack = list(targets)
    while stack:
        p = stack.pop()
        yield from p.terms
        stack.extend(a.arg for m in p.terms for a in (*m.num, *m.den) if a.arg is not None)


@functools.lru_cache(maxsize=100_000)
def _functions(p: Poly) -> frozenset:
    """The function applications and divisors in ``p``, at any depth (not its variables, nor
    its numbers: an op may apply a number with a function, as rms_norm with eps does)."""
    return frozenset(a for a in atoms_of(p) if a.head not in ("var", "const"))


def _constants(targets: list[Poly]) -> list[tuple]:
    """The numbers the targets hold (``const`` atoms), as sorted attribute tuples."""
    from mirage.ops.registry import scalar_attrs

    found = set()
    for a in (a for t in targets for a in atoms_of(t) if a.head == "const"):
        num, den = (int(v) for v in a.name.split("/"))
        found.add(_attrs_key(scalar_attrs(num / den)))
    return sorted(found)


def _attrs_key(attrs: dict) -> tuple:
    return tuple(sorted(attrs.items()))


def variables(polys) -> frozenset:
    """The variables (program inputs) that ``polys`` read, at any depth."""
    return frozenset(a for p in polys for a in atoms_of(p) if a.head == "var")


def _goal(goal: Poly, post_ops: bool) -> tuple[frozenset, bool]:
    """The functions and divisors ``goal`` holds, and whether the op that completes it may be
    the one that applies one of them. Without ops after the loop (``post_ops`` false: one
    iteration, or a split) the last op is an accumulator, whose result is a sum (no new
    function) or the application of its finish function alone (a norm): only a goal that is
    one function application can be completed by the op that makes it."""
    (first, *rest) = goal.terms
    single = not rest and first == Mono(1, first.num) and len(first.num) == 1 and \
        first.num[0].head != "var"
    return _functions(goal), post_ops or single


def _ops_to_make(functions: frozenset, present: frozenset, last_makes: bool) -> int:
    """A lower bound on the ops that complete a goal holding ``functions`` (``_goal``) when
    the tiles hold ``present``: one per missing function, and one more when the last op cannot
    be one of them."""
    missing = len(functions - present)
    return missing + (1 if missing and not last_makes else 0)


def divisors(targets: list[Poly]) -> set[Poly]:
    """The norms (``sqrt`` of a sum: an RMS) the targets' terms divide by, as values: what an
    intermediate kernel may compute once for a later kernel to divide by. A softmax's row sum
    is not offered: computing it apart costs a second pass over the whole exp(Q K^T)."""
    return {atom_poly(a) for t in targets for m in t.terms for a in m.den if a.head == "sqrt"}


def _whole_parts(targets: list[Poly]) -> set[Mono]:
    """Terms a split reduction may produce in full: numerators of target terms and the terms of
    every polynomial inside an atom (divisors, function arguments), at any depth."""
    parts: set[Mono] = set()
    for t in targets:
        for m in t.terms:
            parts.add(Mono(m.size, m.num, (), 1))
            parts.add(Mono(m.size, m.num, (), -1))
        for a in atoms_of(t):
            if a.arg is not None:
                parts |= _whole_parts([a.arg])
    return parts
