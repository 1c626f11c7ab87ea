"""The three meanings a graph walk can take: float arrays, finite-field values, abstract terms."""

from __future__ import annotations

import numpy as np

from mirage.ops import OpRecord, Term, total
from mirage.ops import field as ff


class FloatSemantics:
    """Real arithmetic on numpy arrays of ``dtype`` (float32 or float64), on the CPU."""

    concrete = True

    def __init__(self, dtype=np.float64):
        self.dtype = np.dtype(dtype)

    def apply(self, rec: OpRecord, args, attrs, shapes):
        return rec.float_fn(*args, attrs).astype(self.dtype, copy=False)

    def finish(self, rec: OpRecord, acc, count: int):
        return rec.finish.float_fn(acc, count).astype(self.dtype, copy=False)

    def add(self, a, b):
        return a + b

    def transform(self, value, fn):
        return fn(value)


class FieldSemantics:
    """Arithmetic in Z_p x Z_q (see ``mirage.ops.field``) under one trial's random functions."""

    concrete = True

    def __init__(self, field: ff.Field):
        self.field = field

    def apply(self, rec: OpRecord, args, attrs, shapes):
        return rec.ff_fn(self.field, *args, attrs)

    def finish(self, rec: OpRecord, acc, count: int):
        return rec.finish.ff_fn(self.field, acc, count)

    def add(self, a, b):
        return self.field.add(a, b)

    def transform(self, value, fn):
        return ff.map_both(value, fn)


class ExprSemantics:
    """Abstract expressions: one term per tensor, the same for every element."""

    concrete = False

    def apply(self, rec: OpRecord, args, attrs, shapes):
        return rec.expr_fn(args, attrs, shapes)

    def finish(self, rec: OpRecord, acc: Term, count: int) -> Term:
        return rec.finish.expr_fn(acc, count)

    def loop_total(self, count: int, value: Term) -> Term:
        return total(count, value)
