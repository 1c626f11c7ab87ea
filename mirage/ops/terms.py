"""Abstract-expression terms: the vocabulary in which the op records state their meaning.

A term describes *what* a tensor computes, not its values: ``sum(k, mul(x, y))`` for a matmul
with contraction length ``k``. Numbers the program writes (``x * 0.125``, an eps) are ``const``
atoms, and so is the ``n`` of a mean (``div(sum(n, x), const(n, 1))``, ``registry.mean_of``), so
a sum cannot pass for a mean; only ``rms_norm`` without an eps drops its ``1/n``, as in the
paper (there it scales the whole result and cancels in the norm). The subexpression check over
these terms lives in ``mirage.expr``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def hash_once(obj) -> int:
    """The hash of a frozen dataclass, computed on first use and kept on the instance.

    Terms and normal forms are nested and hashed over and over as cache and set keys during a
    search; rehashing the whole tree each time was a third of the search's time. Assigned as
    ``__hash__`` in the class body (dataclass keeps an explicit ``__hash__``).
    """
    cached = obj.__dict__.get("_hash")
    if cached is None:
        names = _FIELD_NAMES.get(type(obj))
        if names is None:
            names = _FIELD_NAMES[type(obj)] = tuple(f.name for f in fields(obj))
        cached = hash(tuple(obj.__dict__[n] for n in names))
        object.__setattr__(obj, "_hash", cached)  # not a field: equality ignores it
    return cached


def state_without_hash(obj) -> dict:
    """Pickled state without the cached hash: string hashes differ between processes."""
    return {k: v for k, v in obj.__dict__.items() if k != "_hash"}


@dataclass(frozen=True)
class Term:
    """One node of an abstract expression. ``size`` is the reduction length of a ``sum``."""

    head: str
    args: tuple[Term, ...] = ()
    size: int = 0
    name: str = ""

    __hash__ = hash_once
    __getstate__ = state_without_hash

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


CONST = "const"


def const(num: int, den: int) -> Term:
    """A number in an expression, named by its exact ratio ``num/den``: ``x * 0.125`` is
    ``mul(x, const(1, 8))``. Unlike the ``1/n`` of a mean, a constant the program writes is kept,
    so an op that applies it is not mistaken for a no-op by the search."""
    return Term(CONST, name=f"{num}/{den}")


def post_order(roots, is_leaf=None) -> list[Term]:
    """Every distinct subterm (by identity) of ``roots``, each after its arguments, without
    recursion: terms may be deeper than Python's stack, and a doubling chain (``square`` of
    ``square`` ...) shares its subterms, so a tree walk would visit 2**n leaves. A term for which
    ``is_leaf`` is true is listed without its arguments (a caller that already knows it)."""
    seen: set[int] = set()
    order: list[Term] = []
    for root in roots:
        stack = [root]
        while stack:
            t = stack[-1]
            if id(t) in seen:
                stack.pop()
                continue
            pending = [] if is_leaf is not None and is_leaf(t) else [
                a for a in t.args if id(a) not in seen]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            seen.add(id(t))
            order.append(t)
    return order
