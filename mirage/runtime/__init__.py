"""Run µGraphs: ``compile(graph)`` returns a callable on torch tensors (see ``compiled``)."""

from mirage.runtime.compiled import ArgumentError, CompiledGraph, compile
from mirage.runtime.tuning import Config

__all__ = ["ArgumentError", "CompiledGraph", "Config", "compile"]
