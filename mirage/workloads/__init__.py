"""The six paper workloads: input programs and hand-written reference µGraphs."""

from mirage.workloads.programs import PROGRAMS, SHAPES, program
from mirage.workloads.references import REFERENCES, reference

WORKLOADS = tuple(PROGRAMS)
BATCHES = (1, 8, 16)

__all__ = ["BATCHES", "PROGRAMS", "REFERENCES", "SHAPES", "WORKLOADS", "program", "reference"]
