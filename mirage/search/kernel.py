"""Kernel-level search (the outer loop of the paper's Algorithm 1).

A kernel-level prefix is the program's inputs followed by graph-defined kernels. Each step opens
a nested block-level search (``block.py``) over every layout (``layouts.py``) for the tensors that
are still live; a body whose output equals the program's output completes a candidate, a body
with partial outputs (a reduced label split across blocks) extends the prefix for the next kernel
to combine. Pre-defined kernel ops are not searched: their fused forms are block ops (a kernel
transpose is a block ``transpose``), and a pre-defined op alone is what the input program already
is.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

from mirage.expr import Poly, is_reachable, is_subexpression, normalize
from mirage.ir import IRError, KernelGraph, KernelNode, Ref, Target, check, infer
from mirage.ops import Term, var
from mirage.search.block import (
    BlockResult,
    BlockSearch,
    Stats,
    divisors,
    instantiate,
    variables,
)
from mirage.search.cost import estimate_block_seconds
from mirage.search.labels import ProgramLabels, label_program
from mirage.search.layouts import Layout, Operand, enumerate_layouts
from mirage.semantics import ExprSemantics, run_block
from mirage.verify import abstract_outputs

DIVISOR_TILINGS = 2  # tilings of a divisor's kernel (an RMS) each body goes on with


@dataclass(frozen=True)
class Problem:
    """What every search step needs to know about the program (cheap to send to workers)."""

    program: KernelGraph
    labels: ProgramLabels
    target_terms: tuple[Term, ...]
    targets: tuple[Poly, ...]
    target: Target

    @staticmethod
    def of(program: KernelGraph, target: Target) -> Problem:
        terms = tuple(abstract_outputs(program))
        return Problem(program, label_program(program), terms,
                       tuple(normalize(t) for t in terms), target)

    @property
    def transposes(self) -> bool:
        """Does the program transpose anything (so block bodies may need to)?"""
        return any(n.op == "transpose" for n in self.program.nodes)


@dataclass(frozen=True)
class Prefix:
    """A kernel-level prefix: its nodes and, for each live tensor, operand info and term."""

    nodes: tuple[KernelNode, ...]
    live: tuple[Ref, ...]
    operands: tuple[Operand, ...]
    terms: tuple[Term, ...]
    customized: int = 0


def initial_prefix(problem: Problem) -> Prefix:
    program = problem.program
    nodes = tuple(program.nodes[i] for i in program.input_ids)
    live = tuple(Ref(k) for k in range(len(nodes)))
    operands = tuple(Operand(n.outputs[0], labels)
                     for n, labels in zip(nodes, problem.labels.inputs, strict=True))
    terms = tuple(var(f"in{k}") for k in range(len(nodes)))
    return Prefix(nodes, live, operands, terms)


def layouts_for(problem: Problem, prefix: Prefix, allow_split: bool,
                small_tiles: bool = False) -> list[Layout]:
    labels = problem.labels
    present = {f[0] for op in prefix.operands for d in op.labels for f in d}
    reducible = frozenset(lab for lab in present if lab not in labels.output_labels) | (
        labels.reduced & present
    )
    batch = labels.batch_labels
    if not labels.reduced:
        # Elementwise only (numbers, opaque unary and broadcasts included): every output label
        # is common to all tensors, but splitting each one block per index would give one
        # element per block (too many blocks for all but tiny programs). Such labels are
        # tiled like any output label, into rows and tiles; no contraction, so small tiles too.
        batch, small_tiles = frozenset(), True
    return enumerate_layouts(list(prefix.operands), labels.output_labels, batch,
                             reducible, problem.target, allow_split=allow_split,
                             whole=labels.reduced & labels.output_labels,
                             small_tiles=small_tiles)


def extend(problem: Problem, prefix: Prefix, result: BlockResult) -> Prefix | None:
    """The prefix with ``result`` appended as a customized kernel over the live tensors."""
    try:
        if result.keeps_inputs:  # reads a subset: renumber the sources over the args it reads
            sources = result.sources
            block = dataclasses.replace(result.block, nodes=tuple(
                dataclasses.replace(n, source=sources.index(n.source)) if n.op == "input" else n
                for n in result.block.nodes))
            node = infer.customized_op(prefix.nodes, [prefix.live[k] for k in sources], block)
            result = dataclasses.replace(result, block=block)
            live_terms = [prefix.terms[k] for k in sources]
        else:
            node = infer.customized_op(prefix.nodes, prefix.live, result.block)
            live_terms = list(prefix.terms)
    except IRError:
        return None
    index = len(prefix.nodes)
    outs = tuple(Ref(index, k) for k in range(len(node.outputs)))
    operands = tuple(Operand(t, labels) for t, labels in zip(node.outputs, result.output_labels,
                                                              strict=True))
    terms = tuple(run_block(result.block, live_terms, ExprSemantics()))
    if result.keeps_inputs:  # the next kernel reads the same tensors and the new result
        outs, operands, terms = (prefix.live + outs, prefix.operands + operands,
                                 prefix.terms + terms)
    return Prefix((*prefix.nodes, node), outs, operands, terms, prefix.customized + 1)


def restrict(prefix: Prefix, subset: tuple[int, ...] | None) -> Prefix:
    """The prefix with only the live tensors ``subset`` (all of them for None)."""
    if subset is None:
        return prefix
    return dataclasses.replace(prefix, live=tuple(prefix.live[k] for k in subset),
                               operands=tuple(prefix.operands[k] for k in subset),
                               terms=tuple(prefix.terms[k] for k in subset))


def divisor_subsets(problem: Problem, prefix: Prefix) -> list[tuple[int, ...]]:
    """Proper subsets of the live tensors a first kernel may read to compute a divisor of the
    target (an RMS) once: only for targets that divide by a norm, only before any kernel."""
    if prefix.customized:
        return []
    # A kernel that computes only the divisor reads exactly the inputs the divisor depends on
    # (every operand of a body must be read): one subset per distinct set of variables.
    names = [str(t) for t in prefix.terms]
    subsets = set()
    for divisor in divisors(list(problem.targets)):
        used = {a.name for a in variables([divisor])}
        subset = tuple(k for k, name in enumerate(names) if name in used)
        if 0 < len(subset) < len(names) and len(subset) == len(used):
            subsets.add(subset)
    return sorted(subsets)


def complete(prefix: Prefix) -> KernelGraph:
    return KernelGraph(prefix.nodes, prefix.live)


@dataclass(frozen=True)
class Limits:
    max_kernel_ops: int
    max_block_ops: int
    max_customized: int
    use_pruning: bool
    allow_split: bool


def layout_classes(layouts: list[Layout], operands) -> list[list[Layout]]:
    """Group layouts that differ only in extents (first seen first)."""
    classes: dict[tuple, list[Layout]] = {}
    for layout in layouts:
        classes.setdefault(layout.class_key(list(operands)), []).append(layout)
    return list(classes.values())


class KernelSearch:
    """Candidates reachable from a prefix; block bodies are searched once per layout class
    (memoised) and instantiated for every layout of the class."""

    def __init__(self, problem: Problem, limits: Limits, stats: Stats, deadline: float,
                 memo: dict | None = None):
        self.problem, self.limits, self.stats, self.deadline = problem, limits, stats, deadline
        # Two memos. ``_bodies`` (this search's) maps a layout class and its operands' normal
        # forms up to sum sizes to bodies: sizes differ between the layouts of a class, the
        # bodies do not. ``_exact`` (``memo``: it may be a worker's, shared by its tasks) is
        # keyed by the layout and the exact normal forms, a pure function of the key, so what
        # a task finds does not depend on which tasks ran before it in the same worker.
        self._bodies: dict[tuple, list[BlockResult]] = {}
        self._exact: dict[tuple, list[BlockResult]] = {} if memo is None else memo

    def expired(self) -> bool:
        return time.monotonic() > self.deadline

    def bodies(self, prefix: Prefix, layout: Layout, part: int = 0, parts: int = 1,
               subset: tuple[int, ...] | None = None) -> list[BlockResult]:
        sub = restrict(prefix, subset)
        operands, terms = list(sub.operands), list(sub.terms)
        # Bodies depend on how an operand was computed only through its normal form.
        forms = tuple(str(normalize(t)) for t in terms)
        labels = tuple(tuple(tuple(f[0] for f in d) for d in op.labels) for op in operands)
        key = (layout.class_key(operands), tuple(re.sub(r"sum\(\d+", "sum(", f) for f in forms),
               labels, part, parts, subset)
        if key in self._bodies:
            return self._bodies[key]
        exact = (layout, forms, labels, part, parts, subset)
        if exact not in self._exact:
            search = BlockSearch(operands, terms, layout, list(self.problem.targets),
                                 self.limits.max_block_ops, self.stats, self.limits.use_pruning,
                                 self.deadline, self.problem.labels.reduced,
                                 None if subset is None else list(subset),
                                 self.problem.transposes)
            bodies = list(search.run(part, parts))
            if self.expired():
                return bodies  # cut short: not memoised, the class is reported unfinished
            self._exact[exact] = bodies
        self._bodies[key] = self._exact[exact]
        return self._bodies[key]

    def search_class(self, prefix: Prefix, layouts: list[Layout], part: int = 0, parts: int = 1,
                     subset: tuple[int, ...] | None = None) -> Iterator[KernelGraph]:
        """Every candidate whose next kernel uses a layout of this class (with ``parts > 1``,
        those whose body lies in the block search's part ``part``; with ``subset``, a kernel
        over those live tensors only, which computes a divisor of the target)."""
        representative = self.bodies(prefix, layouts[0], part, parts, subset)
        operands = list(restrict(prefix, subset).operands)
        for body in representative:
            results = []
            for layout in layouts:
                if self.expired():
                    return
                result = body if layout == layouts[0] else instantiate(
                    body.steps, operands, layout, body.final, body.keeps_inputs,
                    None if subset is None else list(subset))
                if result is None:
                    self.stats.rejected["instantiate"] += 1
                    continue
                results.append(result)
            if subset is not None:
                # A divisor's kernel is small next to the kernel that follows it, and every
                # one of its tilings would open the same search for that kernel: only the
                # best-estimated few go on.
                results.sort(key=lambda r: estimate_block_seconds(r.block, self.problem.target))
                results = results[:DIVISOR_TILINGS]
            for result in results:
                yield from self._continue(prefix, result)

    def _continue(self, prefix: Prefix, result: BlockResult) -> Iterator[KernelGraph]:
        problem, limits = self.problem, self.limits
        nxt = extend(problem, prefix, result)
        if nxt is None:
            self.stats.rejected["kernel-shape"] += 1
            return
        if result.final:
            if [t.shape for t in problem.program.output_types] != [o.type.shape
                                                                  for o in nxt.operands]:
                self.stats.rejected["output-shape"] += 1
                return
            graph = complete(nxt)
            broken = check(graph, problem.target)
            if broken:
                self.stats.rejected[broken[0].rule.name.lower()] += 1
                return
            yield graph
            return
        values = tuple(normalize(t) for t in nxt.terms)
        if limits.use_pruning and not all(
            any(is_subexpression(v, target) for target in problem.targets) for v in values
        ):
            self.stats.rejected["expression"] += 1
            return
        if limits.use_pruning and not all(is_reachable(t, values) for t in problem.targets):
            self.stats.rejected["reach"] += 1  # e.g. partial sums alone: the inputs are gone
            return
        kernel_ops = len(nxt.nodes) - len(problem.program.input_ids)
        if nxt.customized >= limits.max_customized or kernel_ops >= limits.max_kernel_ops:
            return
        # A kernel that reads only earlier kernels' results (partial sums to combine, say) has
        # no contraction over a program input: its rows may be tiled below tl.dot's 16.
        combines = all(nxt.nodes[r.node].op != "input" for r in nxt.live)
        for members in layout_classes(layouts_for(problem, nxt, allow_split=False,
                                                  small_tiles=combines), nxt.operands):
            yield from self.search_class(nxt, members)
