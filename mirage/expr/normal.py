"""Normal forms of abstract expressions under the paper's equivalence axioms (A_eq).

An expression is normalised to a *polynomial*: a multiset of signed terms, each term being
``sum(n, num / den)`` — a reduction size ``n`` over a product of numerator atoms divided by a
product of denominator atoms. Atoms are input variables, applications of opaque functions
(``exp``, ``sqrt``, ``silu`` …) to a normalised argument, or ``poly(P)``: a polynomial that
divides a term and so cannot be distributed. Two expressions equal under A_eq have the same normal
form. The rules, each named after the axiom it applies (``RULES``), are:

    add-ac        x + y = y + x, (x + y) + z = x + (y + z)       terms form a multiset
    mul-ac        x * y = y * x, (x * y) * z = x * (y * z)       atoms form multisets
    distribute    (x + y) * z = x * z + y * z                     products expand over sums
    div-add       (x + y) / z = x / z + y / z                     division distributes
    mul-div       x * (y / z) = (x * y) / z                       one numerator, one denominator
    sum-one       x = sum(1, x)                                   every term carries a size
    sum-nest      sum(i, sum(j, x)) = sum(i * j, x)               sizes multiply
    sum-add       sum(i, x + y) = sum(i, x) + sum(i, y)           sums distribute over adds
    sum-mul       sum(i, x) * y = sum(i, x * y)                   a non-reduced factor moves in
    sum-div       sum(i, x) / y = sum(i, x / y)                   so does a non-reduced divisor

Constant factors and cancellation are not modelled (as in the paper): ``x - x`` keeps both terms.
``RULE_COUNTS`` counts how often each rule fired, for the search report.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass

from mirage.ops import Term
from mirage.ops.terms import hash_once, state_without_hash

RULES = {
    "add-ac": "x + y = y + x, (x + y) + z = x + (y + z)",
    "mul-ac": "x * y = y * x, (x * y) * z = x * (y * z)",
    "distribute": "(x + y) * z = x * z + y * z",
    "div-add": "(x + y) / z = x / z + y / z",
    "mul-div": "x * (y / z) = (x * y) / z",
    "sum-one": "x = sum(1, x)",
    "sum-nest": "sum(i, sum(j, x)) = sum(i * j, x)",
    "sum-add": "sum(i, x + y) = sum(i, x) + sum(i, y)",
    "sum-mul": "sum(i, x) * y = sum(i, x * y)",
    "sum-div": "sum(i, x) / y = sum(i, x / y)",
}
RULE_COUNTS: Counter[str] = Counter()

Atoms = tuple  # sorted tuple of Atom


@dataclass(frozen=True, order=True)
class Atom:
    """A variable (``head == "var"``), an opaque function of ``arg``, or ``poly`` (a divisor)."""

    head: str
    name: str = ""
    arg: Poly | None = None

    __hash__ = hash_once
    __getstate__ = state_without_hash

    def __str__(self) -> str:
        if self.head == "var":
            return self.name
        return f"{self.head}({self.arg})"


@dataclass(frozen=True, order=True)
class Mono:
    """sign * sum(size, prod(num) / prod(den))."""

    size: int
    num: Atoms
    den: Atoms = ()
    sign: int = 1

    __hash__ = hash_once
    __getstate__ = state_without_hash

    def __str__(self) -> str:
        body = "*".join(map(str, self.num)) or "1"
        if self.den:
            body += "/" + "/".join(map(str, self.den))
        out = f"sum({self.size}, {body})" if self.size != 1 else body
        return out if self.sign > 0 else f"-{out}"


@dataclass(frozen=True, order=True)
class Poly:
    """A multiset of terms, kept sorted so equal polynomials compare equal."""

    terms: tuple[Mono, ...]

    __hash__ = hash_once
    __getstate__ = state_without_hash

    def __str__(self) -> str:
        return " + ".join(map(str, self.terms))

    @property
    def is_monomial(self) -> bool:
        return len(self.terms) == 1


def _poly(terms) -> Poly:
    RULE_COUNTS["add-ac"] += 1
    return Poly(tuple(sorted(terms)))


def _mono(size, num, den, sign) -> Mono:
    return Mono(size, tuple(sorted(num)), tuple(sorted(den)), sign)


def _mul(a: Poly, b: Poly) -> Poly:
    if len(a.terms) > 1 or len(b.terms) > 1:
        RULE_COUNTS["distribute"] += 1
    if any(t.size > 1 for t in a.terms + b.terms):
        RULE_COUNTS["sum-mul"] += 1
    RULE_COUNTS["mul-ac"] += 1
    return _poly(
        _mono(x.size * y.size, x.num + y.num, x.den + y.den, x.sign * y.sign)
        for x in a.terms
        for y in b.terms
    )


def _div(a: Poly, b: Poly) -> Poly:
    if b.is_monomial and b.terms[0].size == 1:
        # A plain product divides term by term: move its atoms across the fraction bar.
        d = b.terms[0]
        RULE_COUNTS["mul-div"] += 1
        return _poly(_mono(t.size, t.num + d.den, t.den + d.num, t.sign * d.sign) for t in a.terms)
    divisor = Atom("poly", arg=b)
    if len(a.terms) > 1:
        RULE_COUNTS["div-add"] += 1
    if any(t.size > 1 for t in a.terms):
        RULE_COUNTS["sum-div"] += 1
    return _poly(_mono(t.size, t.num, t.den + (divisor,), t.sign) for t in a.terms)


def _sum(size: int, a: Poly) -> Poly:
    RULE_COUNTS["sum-nest" if any(t.size > 1 for t in a.terms) else "sum-one"] += 1
    if len(a.terms) > 1:
        RULE_COUNTS["sum-add"] += 1
    return _poly(_mono(t.size * size, t.num, t.den, t.sign) for t in a.terms)


def atom_poly(atom: Atom) -> Poly:
    return Poly((Mono(1, (atom,)),))


@functools.lru_cache(maxsize=200_000)
def normalize(t: Term) -> Poly:
    """The normal form of term ``t``."""
    if t.head == "var":
        return atom_poly(Atom("var", t.name))
    if t.head == "sum":
        return _sum(t.size, normalize(t.args[0]))
    args = [normalize(a) for a in t.args]
    if t.head == "add":
        return _poly(args[0].terms + args[1].terms)
    if t.head == "sub":
        negated = tuple(_mono(m.size, m.num, m.den, -m.sign) for m in args[1].terms)
        return _poly(args[0].terms + negated)
    if t.head == "mul":
        return _mul(args[0], args[1])
    if t.head == "div":
        return _div(args[0], args[1])
    # exp, sqrt, silu, gelu, relu: opaque functions of a normalised argument
    return atom_poly(Atom(t.head, arg=args[0]))
