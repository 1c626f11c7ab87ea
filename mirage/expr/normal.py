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
A number the program writes (``const``, from ``x * 0.125``) is an atom like a variable.
``RULE_COUNTS`` counts how often each rule fired, for the search report.

Normal forms can be exponentially larger than the term (``square`` applied n times is a product
of 2**n atoms), and a user's program can be deeper than Python's stack. ``normalize`` walks the
term without recursion and refuses, with an ``ExpressionTooLarge`` (an ``InputError``), a form
of more than ``MAX_TERMS`` terms, a term of more than ``MAX_ATOMS`` atoms, or functions nested
more than ``MAX_NESTING`` deep (every other function here recurses along that nesting).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from mirage.errors import InputError
from mirage.ops import Term
from mirage.ops.terms import hash_once, post_order, state_without_hash

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

MAX_TERMS = 20_000
MAX_ATOMS = 20_000
MAX_NESTING = 64


class ExpressionTooLarge(InputError):
    """A normal form would exceed ``MAX_TERMS``, ``MAX_ATOMS`` or ``MAX_NESTING``."""

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
    if len(a.terms) * len(b.terms) > MAX_TERMS:
        raise ExpressionTooLarge(f"expression: a product of {len(a.terms)} and {len(b.terms)} "
                                 f"terms exceeds the limit of {MAX_TERMS} terms")
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


# Structural ids: equal terms get one int, found without comparing terms (a comparison of two
# equal deep terms recurses along their depth). A term keeps its id as ``(token, id)``; a new
# token (after the tables are cleared, or in another process after pickling) voids old ones.
_SIDS: dict[tuple, int] = {}
_CACHE: dict[int, Poly] = {}
_TABLE_SIZE = 200_000  # as the lru_cache it replaces
_TOKEN = [object()]


def _clear() -> None:
    _SIDS.clear()
    _CACHE.clear()
    _TOKEN[0] = object()


def _nesting(p: Poly) -> int:
    return p.__dict__.get("_nesting", 0)


def _checked(p: Poly, nesting: int) -> Poly:
    if len(p.terms) > MAX_TERMS:
        raise ExpressionTooLarge(f"expression: {len(p.terms)} terms exceed the limit of "
                                 f"{MAX_TERMS}")
    for m in p.terms:
        if len(m.num) + len(m.den) > MAX_ATOMS:
            raise ExpressionTooLarge(f"expression: a product of {len(m.num) + len(m.den)} "
                                     f"factors exceeds the limit of {MAX_ATOMS}")
    if nesting > MAX_NESTING:
        raise ExpressionTooLarge(f"expression: functions nested {nesting} deep exceed the "
                                 f"limit of {MAX_NESTING}")
    object.__setattr__(p, "_nesting", nesting)  # not a field: equality ignores it
    return p


def _step(t: Term, args: list[Poly]) -> Poly:
    """The normal form of ``t`` given the normal forms of its operands."""
    if t.head == "var" or not t.args:  # an input, or a constant leaf
        return atom_poly(Atom(t.head, t.name))
    nesting = max(_nesting(a) for a in args)
    if t.head == "sum":
        return _checked(_sum(t.size, args[0]), nesting)
    if t.head == "add":
        return _checked(_poly(args[0].terms + args[1].terms), nesting)
    if t.head == "sub":
        negated = tuple(_mono(m.size, m.num, m.den, -m.sign) for m in args[1].terms)
        return _checked(_poly(args[0].terms + negated), nesting)
    if t.head == "mul":
        return _checked(_mul(args[0], args[1]), nesting)
    if t.head == "div":
        divides = not (args[1].is_monomial and args[1].terms[0].size == 1)
        return _checked(_div(args[0], args[1]), max(nesting, _nesting(args[1]) + divides))
    # exp, sqrt, silu, gelu, relu: opaque functions of a normalised argument
    return _checked(atom_poly(Atom(t.head, arg=args[0])), _nesting(args[0]) + 1)


def _structural_ids(t: Term) -> list[tuple[Term, int]]:
    """``(term, structural id)`` of ``t`` and of each subterm without an id yet, operands
    first; a walk with no recursion, over the new part of ``t`` only."""
    token = _TOKEN[0]

    def kept(u: Term) -> int | None:  # an id this process's cache still holds the form of
        cached = u.__dict__.get("_sid")
        if cached is not None and cached[0] is token and cached[1] in _CACHE:
            return cached[1]
        return None

    sid: dict[int, int] = {}
    order: list[tuple[Term, int]] = []
    for u in post_order([t], is_leaf=lambda u: kept(u) is not None):
        n = kept(u)
        if n is None:
            key = (u.head, u.size, u.name, tuple(sid[id(a)] for a in u.args))
            n = _SIDS.setdefault(key, len(_SIDS))
            object.__setattr__(u, "_sid", (token, n))  # not a field: equality ignores it
        sid[id(u)] = n
        order.append((u, n))
    return order


def normalize(t: Term) -> Poly:
    """The normal form of term ``t``; ``ExpressionTooLarge`` past the module's limits."""
    if len(_SIDS) > _TABLE_SIZE:
        _clear()
    for u, n in _structural_ids(t):
        if n not in _CACHE:
            args = [_CACHE[a.__dict__["_sid"][1]] for a in u.args]
            _CACHE[n] = _step(u, args)
    return _CACHE[t.__dict__["_sid"][1]]


normalize.cache_clear = _clear  # the lru_cache API earlier callers used
