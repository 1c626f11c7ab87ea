"""Abstract expressions: normal forms under the paper's A_eq axioms and the A_sub check."""

from mirage.expr.normal import RULE_COUNTS, RULES, Atom, Mono, Poly, normalize
from mirage.expr.subexpr import atoms_of, is_reachable, is_subexpression

__all__ = [
    "RULES",
    "RULE_COUNTS",
    "Atom",
    "Mono",
    "Poly",
    "atoms_of",
    "is_reachable",
    "is_subexpression",
    "normalize",
]
