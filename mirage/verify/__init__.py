"""Probabilistic equivalence checking of µGraphs (finite-field random tests + float check)."""

from mirage.verify.verifier import (
    CANNOT_CERTIFY,
    EQUIVALENT,
    NOT_EQUIVALENT,
    Verdict,
    VerifyConfig,
    abstract_outputs,
    trial_bound,
    verify,
)

__all__ = [
    "CANNOT_CERTIFY",
    "EQUIVALENT",
    "NOT_EQUIVALENT",
    "Verdict",
    "VerifyConfig",
    "abstract_outputs",
    "trial_bound",
    "verify",
]
