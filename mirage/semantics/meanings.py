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


_TABLE_LIMIT = 200_000


class ExprSemantics:
    """Abstract expressions: one term per tensor, the same for every element.

    Terms are hash-consed: structurally equal terms made through one instance are one object,
    and each is hashed when made, its operands first. A graph's terms share their subterms, so
    a chain of n ops is n objects, and comparing or hashing a term never recurses down its
    depth (a 1000-op chain would exhaust Python's stack otherwise). Evaluate two graphs with
    the same instance to share their terms.
    """

    concrete = False

    def __init__(self):
        self._table: dict[tuple, Term] = {}
        self._interned: set[int] = set()  # ids of terms in the table (kept alive by it)

    def intern(self, term: Term) -> Term:
        """The canonical object for ``term`` (made of canonical subterms)."""
        if id(term) in self._interned:
            return term
        if len(self._table) > _TABLE_LIMIT:  # a long-lived instance (the search's): start over
            self._table.clear()
            self._interned.clear()
        done: dict[int, Term] = {}
        stack = [term]
        while stack:  # iterative post-order over the parts not interned yet
            t = stack[-1]
            if id(t) in done:
                stack.pop()
                continue
            pending = [a for a in t.args if id(a) not in self._interned and id(a) not in done]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            args = tuple(a if id(a) in self._interned else done[id(a)] for a in t.args)
            key = (t.head, t.size, t.name, tuple(id(a) for a in args))
            canon = self._table.get(key)
            if canon is None:
                same = all(x is y for x, y in zip(args, t.args, strict=True))
                canon = t if same else Term(t.head, args, t.size, t.name)
                hash(canon)  # operands are hashed already: one level deep
                self._table[key] = canon
                self._interned.add(id(canon))
            done[id(t)] = canon
        return done[id(term)]

    def apply(self, rec: OpRecord, args, attrs, shapes):
        args = [self.intern(a) for a in args]
        return self.intern(rec.expr_fn(args, attrs, shapes))

    def finish(self, rec: OpRecord, acc: Term, count: int) -> Term:
        return self.intern(rec.finish.expr_fn(self.intern(acc), count))

    def loop_total(self, count: int, value: Term) -> Term:
        return self.intern(total(count, self.intern(value)))
