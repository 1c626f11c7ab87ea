"""The three meanings a graph walk can take: float arrays, finite-field values, abstract terms."""

from __future__ import annotations

import numpy as np

from mirage.ir import TensorType
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

    def slice(self, value, index):
        return value[index]

    def add(self, a, b):
        return a + b

    def new_output(self, t: TensorType):
        return np.full(t.shape, np.nan, dtype=self.dtype)  # NaN: an unwritten tile shows

    def write(self, out, index, tile):
        out[index] = np.broadcast_to(tile, out[index].shape)

    def seal(self, out):
        return out


class FieldSemantics:
    """Arithmetic in Z_p x Z_q (see ``mirage.ops.field``) under one trial's random functions."""

    concrete = True

    def __init__(self, field: ff.Field):
        self.field = field

    def apply(self, rec: OpRecord, args, attrs, shapes):
        return rec.ff_fn(self.field, *args, attrs)

    def finish(self, rec: OpRecord, acc, count: int):
        return rec.finish.ff_fn(self.field, acc, count)

    def slice(self, value, index):
        return ff.map_both(value, lambda x: x[index])

    def add(self, a, b):
        return self.field.add(a, b)

    def new_output(self, t: TensorType):
        # -1 marks unwritten elements; "q" is dropped at sealing if any tile had no Z_q half.
        return {"p": np.full(t.shape, -1, np.int64), "q": np.full(t.shape, -1, np.int64),
                "q_defined": True}

    def write(self, out, index, tile):
        out["p"][index] = np.broadcast_to(tile.p, out["p"][index].shape)
        if tile.q is None:
            out["q_defined"] = False
        else:
            out["q"][index] = np.broadcast_to(tile.q, out["q"][index].shape)

    def seal(self, out) -> ff.FFValue:
        return ff.FFValue(out["p"], out["q"] if out["q_defined"] else None)


class ExprSemantics:
    """Abstract expressions: one term per tensor, the same for every element."""

    concrete = False

    def apply(self, rec: OpRecord, args, attrs, shapes):
        return rec.expr_fn(args, attrs, shapes)

    def finish(self, rec: OpRecord, acc: Term, count: int) -> Term:
        return rec.finish.expr_fn(acc, count)

    def loop_total(self, count: int, value: Term) -> Term:
        return total(count, value)
