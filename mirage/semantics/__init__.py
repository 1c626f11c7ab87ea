"""One graph walker (``evaluate``) and the three meanings it can give a graph."""

from mirage.semantics.meanings import ExprSemantics, FieldSemantics, FloatSemantics
from mirage.semantics.walker import evaluate, run_block

__all__ = ["ExprSemantics", "FieldSemantics", "FloatSemantics", "evaluate", "run_block"]
