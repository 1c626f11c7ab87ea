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


def _matches(e_terms: tuple[Mono, ...], t_terms: tuple[Mono, ...]) -> bool:
    """Injective assignment of e's terms to t's terms with ``_part_of`` (small sets: backtrack)."""
    if not e_terms:
        return True
    first, rest = e_terms[0], e_terms[1:]
    for i, t in enumerate(t_terms):
        if _part_of(first, t) and _matches(rest, t_terms[:i] + t_terms[i + 1 :]):
            return True
    return False


def _atoms(t: Poly):
    for term in t.terms:
        yield from term.num
        yield from term.den


@functools.lru_cache(maxsize=500_000)
def is_subexpression(e: Poly, t: Poly) -> bool:
    """Can ``e`` occur while computing ``t`` (under A_eq and A_sub)?"""
    if len(e.terms) <= len(t.terms) and _matches(e.terms, t.terms):
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
