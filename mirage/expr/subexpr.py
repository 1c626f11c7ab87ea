"""The subexpression check (the paper's A_sub) over normal forms, used to prune the search.

``is_subexpression(e, t)`` holds when ``e`` can appear while computing ``t``: an operand is a
subexpression of its result, a divisor of its quotient, and the relation is reflexive and
transitive. On normal forms that means: each term of ``e`` is a *part* of a distinct term of
``t`` — a reduction over a divisor of its size, a sub-multiset of its numerator and denominator —
or ``e`` is the divisor of a term on its own, or ``e`` is a subexpression of the argument of one
of ``t``'s atoms. The check is deliberately generous: pruning must never remove a prefix of a
correct µGraph; the verifier, not this check, decides equivalence.
"""

from __future__ import annotations

import functools
from collections import Counter

from mirage.expr.normal import Atom, Mono, Poly


def _sub_multiset(small: tuple, big: tuple) -> bool:
    need, have = Counter(small), Counter(big)
    return all(have[k] >= v for k, v in need.items())


def _part_of(e: Mono, t: Mono) -> bool:
    if t.size % e.size:
        return False
    if _sub_multiset(e.num, t.num) and _sub_multiset(e.den, t.den):
        return True
    # the divisor on its own: x / y has y as a subexpression
    return not e.den and _sub_multiset(e.num, t.den)


def _context(e: Mono, t: Mono) -> tuple | None:
    """What turns term ``e`` into term ``t``: (size factor, extra numerator atoms, extra
    denominator atoms, sign), or None when ``e`` is not a part of ``t`` that way."""
    if t.size % e.size:
        return None
    extra_num, extra_den = Counter(t.num), Counter(t.den)
    extra_num.subtract(e.num)
    extra_den.subtract(e.den)
    if min(extra_num.values(), default=0) < 0 or min(extra_den.values(), default=0) < 0:
        return None
    return (t.size // e.size, tuple(extra_num.elements()), tuple(extra_den.elements()),
            t.sign * e.sign)


def _scaled(e: Mono, context: tuple) -> Mono:
    size, num, den, sign = context
    return Mono(e.size * size, tuple(sorted(e.num + num)), tuple(sorted(e.den + den)),
                e.sign * sign)


def _matches(e_terms: tuple[Mono, ...], t_terms: tuple[Mono, ...]) -> bool:
    """Is ``e`` (two or more terms) a part of ``t``: one context — a size, numerator and
    denominator atoms, a sign — that turns every term of ``e`` into a distinct term of ``t``?

    The terms of a sum stay together: whatever uses ``e`` (a product, a quotient, a
    reduction, a difference) applies to all of its terms alike (``(e1 + e2) * f = e1 f +
    e2 f``; a sum of products applies each of its terms alike), and the normal form never
    cancels or merges terms; a sum divided by or under a function becomes an atom's argument
    (checked apart). Requiring parts of unrelated terms instead (``in1 + in2`` of ``in1 in1 -
    in1 in1 in2``) would admit any sum of pieces."""
    have = Counter(t_terms)
    for t in have:
        context = _context(e_terms[0], t)
        if context is None:
            continue
        need = Counter(_scaled(m, context) for m in e_terms)
        if all(have[m] >= k for m, k in need.items()):
            return True
    return False


def _atoms(t: Poly):
    for term in t.terms:
        yield from term.num
        yield from term.den


@functools.lru_cache(maxsize=500_000)
def is_subexpression(e: Poly, t: Poly) -> bool:
    """Can ``e`` occur while computing ``t`` (under A_eq and A_sub)?"""
    if len(e.terms) == 1 and any(_part_of(e.terms[0], m) for m in t.terms):
        return True
    if 1 < len(e.terms) <= len(t.terms) and _matches(e.terms, t.terms):
        return True
    return any(a.arg is not None and is_subexpression(e, a.arg) for a in set(_atoms(t)))


def atoms_of(t: Poly) -> set[Atom]:
    """Every atom of ``t``, at any depth."""
    found: set[Atom] = set()
    for a in _atoms(t):
        found.add(a)
        if a.arg is not None:
            found |= atoms_of(a.arg)
    return found


def is_reachable(t: Poly, values: tuple[Poly, ...]) -> bool:
    """Can ``t`` still be computed from ``values`` alone (a necessary condition)?

    Ops never take an atom out of a function or a divisor, and never shrink a term's size: the
    atoms of a computed term (numerator or denominator) come from terms of its operands whose
    sizes divide its size, or are new applications of a function (or a division) to a computed
    argument. So each atom of each term of ``t`` must occur in a term of a value whose size
    divides the term's size, or be a function (divisor) whose argument is reachable in turn.
    A kernel that leaves only partial sums behind cannot give back an element-wise input."""
    return all(_atom_reachable(a, m.size, values) for m in t.terms for a in m.num + m.den)


@functools.lru_cache(maxsize=100_000)
def _atom_reachable(a: Atom, size: int, values: tuple[Poly, ...]) -> bool:
    if a.head == "const":
        return True  # a number can be applied at any step
    if any(size % u.size == 0 and (a in u.num or a in u.den) for v in values for u in v.terms):
        return True
    return a.arg is not None and is_reachable(a.arg, values)
