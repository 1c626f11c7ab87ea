"""Abstract-expression terms: the vocabulary in which the op records state their meaning.

A term describes *what* a tensor computes, not its values: ``sum(k, mul(x, y))`` for a matmul
with contraction length ``k``. Constant factors (the ``1/n`` of a mean) are not tracked, as in the
paper. The subexpression check over these terms lives in ``mirage.expr``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Term:
    """One node of an abstract expression. ``size`` is the reduction length of a ``sum``."""

    head: str
    args: tuple[Term, ...] = ()
    size: int = 0
    name: str = ""

    def __str__(self) -> str:
        if self.head == "var":
            return self.name
        if self.head == "sum":
            return f"sum({self.size}, {self.args[0]})"
        return f"{self.head}({', '.join(str(a) for a in self.args)})"


def var(name: str) -> Term:
    return Term("var", name=name)


def app(head: str, *args: Term) -> Term:
    return Term(head, tuple(args))


def total(size: int, x: Term) -> Term:
    """sum(size, x); sum(1, x) is x (axiom ``x = sum(1, x)``)."""
    return x if size == 1 else Term("sum", (x,), size=size)
