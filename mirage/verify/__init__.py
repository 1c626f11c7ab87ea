"""Probabilistic equivalence checking of µGraphs (finite-field random tests + float check)."""

from mirage.verify.verifier import (
    Verdict,
    VerifyConfig,
    abstract_outputs,
    trial_bound,
    verify,
)

__all__ = ["Verdict", "VerifyConfig", "abstract_outputs", "trial_bound", "verify"]
