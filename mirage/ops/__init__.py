"""Operators: the registry of op records, finite-field arithmetic and abstract-expression terms."""

from mirage.ops.registry import (
    ACCUMULATOR_KINDS,
    REGISTRY,
    Finish,
    Level,
    OpRecord,
    Prop,
    ShapeError,
    get,
    ops_with,
)
from mirage.ops.terms import Term, app, total, var

__all__ = [
    "ACCUMULATOR_KINDS",
    "REGISTRY",
    "Finish",
    "Level",
    "OpRecord",
    "Prop",
    "ShapeError",
    "Term",
    "app",
    "get",
    "ops_with",
    "total",
    "var",
]
