"""What the frontend did with a graph: typed records, a table (``str``) and JSON.

One ``CompileReport`` per compile (per input-shape key): every captured subgraph with its ops,
shapes, the decision and why, the chosen µGraph's summary, times against Inductor when measured
and the memory floor; and every node left out of the subgraphs with the reason. ``Report`` holds
the compiles of one backend or ``optimize`` object, newest last.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from tabulate import tabulate

# Decisions a subgraph can end with.
MIRAGE = "mirage"  # Mirage's µGraph runs on the GPU (faster than Inductor)
INTERPRETER = "mirage-interpreter"  # the µGraph runs in Triton's CPU interpreter
INDUCTOR = "inductor"  # Inductor's code for the same subgraph
EAGER = "eager"  # the original FX code


@dataclass
class SubgraphReport:
    """One captured subgraph and what became of it."""

    index: int
    ops: list[str]
    input_shapes: list[list[int]]
    output_shapes: list[list[int]]
    decision: str
    reason: str
    kernels: str = ""  # summary of the chosen (or best) µGraph
    candidates: int = 0  # verified µGraphs the search found besides the program itself
    mirage_us: float | None = None
    inductor_us: float | None = None
    bytes_moved: int = 0
    bandwidth_gbs: float = 0.0
    floor_us: float = 0.0
    floor_fraction: float | None = None  # floor / time of the code kept, when measured
    timing_method: str = ""


@dataclass
class CompileReport:
    """One compile of one graph for one input key (shapes and dtypes)."""

    key: str
    subgraphs: list[SubgraphReport] = field(default_factory=list)
    left_out: list[dict] = field(default_factory=list)  # {"node", "op", "reason"}
    rest: str = ""  # how the nodes outside the subgraphs run
    whole_graph_fallback: str = ""  # set when nothing was captured on purpose (autograd …)
    bandwidth_note: str = ""

    def decisions(self) -> list[str]:
        return [s.decision for s in self.subgraphs]


def _fmt(x) -> str:
    return "" if x is None else f"{x:.3g}"


@dataclass
class Report:
    """Every compile of one backend / ``optimize`` object, oldest first."""

    compiles: list[CompileReport] = field(default_factory=list)

    @property
    def last(self) -> CompileReport:
        if not self.compiles:
            raise LookupError("nothing compiled yet: call the compiled model first")
        return self.compiles[-1]

    @property
    def subgraphs(self) -> list[SubgraphReport]:
        """The subgraphs of the latest compile."""
        return self.last.subgraphs

    def __str__(self) -> str:
        parts = []
        for c in self.compiles:
            parts.append(f"compile {c.key}" + (f": {c.whole_graph_fallback}"
                                               if c.whole_graph_fallback else ""))
            rows = [[s.index, ", ".join(s.ops), " ".join(map(_shape, s.input_shapes)),
                     " ".join(map(_shape, s.output_shapes)), s.decision, s.reason, s.kernels,
                     _fmt(s.mirage_us), _fmt(s.inductor_us), _fmt(s.floor_us),
                     "" if s.floor_fraction is None else f"{s.floor_fraction:.0%}"]
                    for s in c.subgraphs]
            if rows:
                parts.append(tabulate(rows, headers=["#", "ops", "inputs", "outputs", "decision",
                                                     "why", "kernels", "mirage µs",
                                                     "inductor µs", "floor µs", "of floor"],
                                      maxcolwidths=[None, 36, 24, 24, None, 44, 36]))
            for n in c.left_out:
                parts.append(f"  left out: {n['node']} ({n['op']}): {n['reason']}")
            if c.rest:
                parts.append(f"  rest of the graph: {c.rest}")
            if c.bandwidth_note:
                parts.append(f"  floor: {c.bandwidth_note}")
        return "\n".join(parts) if parts else "nothing compiled yet"

    def to_json(self) -> str:
        return json.dumps({"compiles": [asdict(c) for c in self.compiles]}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Report:
        data = json.loads(text)
        compiles = []
        for c in data["compiles"]:
            subs = [SubgraphReport(**s) for s in c.pop("subgraphs")]
            compiles.append(CompileReport(subgraphs=subs, **c))
        return cls(compiles)


def _shape(shape) -> str:
    return "(" + ",".join(str(d) for d in shape) + ")"
