"""Probabilistic equivalence of two kernel graphs: random finite-field tests, then a float check.

**Finite-field tests.** Each trial draws fresh uniform inputs in Z_p (and, independently, in Z_q
for the arguments of ``exp``), fresh keys for the random functions that stand in for non-LAX ops
(``sqrt``, ``silu``, ``gelu``, ``relu``; ``rms_norm`` uses the ``sqrt`` one), evaluates both graphs
under the same field and compares every output element. Any mismatch rejects.

**False-pass bound.** View each output element as a rational function of the inputs and of the
*atoms* (one per distinct ``exp`` term and per distinct random-function application). Let ``D``
bound the degree of the numerator of (program - candidate) after clearing denominators (the sum
of both graphs' degrees, computed from their abstract expressions), ``E`` the number of distinct
``exp`` atoms and ``d`` the largest degree of an ``exp`` argument. One trial passes two
inequivalent graphs only if two distinct ``exp`` arguments collide in Z_q (probability at most
``C(E, 2) * d / q`` by Schwartz-Zippel) or the nonzero numerator vanishes with atoms drawn from a
set of at least ``q`` values (at most ``D / q``). So one trial errs with probability at most::

    eps = (C(E, 2) * d + D) / q            (q = 1,048,571, p = 2,097,143)

and ``T`` independent trials with probability at most ``eps ** T``. ``trials_for`` picks the
smallest ``T >= min_trials`` with ``eps ** T <= target`` (default 1e-12). For the six paper
workloads ``eps`` is below 1e-3, so four trials give less than 1e-12. The upstream artifact used
p = 227, q = 113, one trial and inputs equal to the element index — deterministic inputs that make
the bound void (``tests/test_verify.py`` shows a wrong QKNorm µGraph passing that check).

**Float check.** Both graphs run on the same random real inputs (float64 on the CPU by default)
and must agree to a relative L2 error of ``float_rtol``; a NaN or an unwritten output fails.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from mirage.ir import DEFAULT_TARGET, KernelGraph, Target, check
from mirage.ops import Term, var
from mirage.ops.field import Field, NotLaxError, Q
from mirage.semantics import ExprSemantics, FieldSemantics, FloatSemantics, evaluate

RANDOM_ATOMS = frozenset({"sqrt", "silu", "gelu", "relu"})


@dataclass(frozen=True)
class VerifyConfig:
    target_false_pass: float = 1e-12
    min_trials: int = 3
    max_trials: int = 32
    seed: int = 0
    float_check: bool = True
    float_rtol: float = 1e-6
    float_dtype: str = "float64"
    float_scale: float = 0.1  # inputs ~ N(0, scale**2): keeps exp() of dot products finite


@dataclass(frozen=True)
class Verdict:
    """The verifier's answer. ``bound`` is the false-pass probability when ``equivalent``."""

    equivalent: bool
    reason: str
    trials: int = 0
    bound: float = 1.0
    float_error: float | None = None

    def __bool__(self) -> bool:
        return self.equivalent


# --- the bound ---------------------------------------------------------------------------------


@functools.cache
def _degree(t: Term) -> int:
    if t.head == "var":
        return 1
    if t.head == "exp" or t.head in RANDOM_ATOMS:
        return 1  # an atom
    degrees = [_degree(a) for a in t.args]
    if t.head in ("add", "sub"):
        return max(degrees)
    if t.head in ("mul", "div"):  # div: clearing the denominator adds its degree
        return sum(degrees)
    if t.head == "sum":
        return degrees[0]
    raise ValueError(f"no degree rule for term head {t.head!r}")


def _exp_atoms(t: Term, found: set[Term]) -> None:
    if t.head == "exp":
        found.add(t)
    for a in t.args:
        _exp_atoms(a, found)


def abstract_outputs(graph: KernelGraph) -> list[Term]:
    """The abstract expression of each output (inputs named ``in0``, ``in1`` … by position)."""
    inputs = [var(f"in{k}") for k in range(len(graph.input_ids))]
    return evaluate(graph, inputs, ExprSemantics())


def trial_bound(program: KernelGraph, candidate: KernelGraph) -> float:
    """``eps``: the probability that one trial passes the two graphs if they differ."""
    terms = abstract_outputs(program) + abstract_outputs(candidate)
    exps: set[Term] = set()
    for t in terms:
        _exp_atoms(t, exps)
    d = max((_degree(e.args[0]) for e in exps), default=0)
    n_prog = len(program.outputs)
    degree = max(_degree(a) + _degree(b) for a, b in zip(terms[:n_prog], terms[n_prog:],
                                                           strict=True))
    e = len(exps)
    return (e * (e - 1) // 2 * d + degree) / Q


def trials_for(eps: float, config: VerifyConfig) -> int:
    if eps >= 1.0:
        return config.max_trials
    needed = math.ceil(math.log(config.target_false_pass) / math.log(eps))
    return min(config.max_trials, max(config.min_trials, needed))


# --- the checks --------------------------------------------------------------------------------


def signature_mismatch(program: KernelGraph, candidate: KernelGraph) -> str | None:
    if program.input_types != candidate.input_types:
        return (f"inputs differ: {[str(t) for t in program.input_types]} vs "
                f"{[str(t) for t in candidate.input_types]}")
    if [t.shape for t in program.output_types] != [t.shape for t in candidate.output_types]:
        return (f"outputs differ: {[str(t) for t in program.output_types]} vs "
                f"{[str(t) for t in candidate.output_types]}")
    return None


# The program's side of a trial depends only on the program and the trial's seed, and a search
# verifies many candidates against one program with the same seeds: keep the last few.
_PROGRAM_SIDE: dict[tuple, tuple] = {}
_PROGRAM_SIDE_SIZE = 8


def _program_side(program: KernelGraph, seed: int, field: Field) -> tuple[list, list]:
    """Inputs and program outputs of the trial with ``seed``; leaves ``field`` (made from
    ``seed``) in the state evaluating the program left it in (random-function keys drawn)."""
    key = (program.digest, seed, field.p, field.q)
    if key in _PROGRAM_SIDE:
        inputs, expected, state = _PROGRAM_SIDE[key]
        field.restore(state)
        return inputs, expected
    inputs = [field.random_input(t.shape) for t in program.input_types]
    expected = evaluate(program, inputs, FieldSemantics(field))
    if len(_PROGRAM_SIDE) >= _PROGRAM_SIDE_SIZE:
        _PROGRAM_SIDE.pop(next(iter(_PROGRAM_SIDE)))
    _PROGRAM_SIDE[key] = (inputs, expected, field.state())
    return inputs, expected


def field_trial(program: KernelGraph, candidate: KernelGraph, field: Field,
                seed: int | None = None) -> str | None:
    """One random test; returns the reason for a mismatch, or None when all outputs agree.
    With the ``seed`` ``field`` was made from, the program's side is reused across calls."""
    if seed is None:
        inputs = [field.random_input(t.shape) for t in program.input_types]
        expected = evaluate(program, inputs, FieldSemantics(field))
    else:
        inputs, expected = _program_side(program, seed, field)
    got = evaluate(candidate, inputs, FieldSemantics(field))
    for k, (a, b) in enumerate(zip(expected, got, strict=True)):
        differ = np.count_nonzero(a.p != b.p)
        if differ:
            return f"output {k}: {differ} of {a.p.size} elements differ in Z_p"
    return None


def float_error(program: KernelGraph, candidate: KernelGraph, config: VerifyConfig,
                seed: int) -> float:
    """Relative L2 error of the candidate against the program on random real inputs."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(config.float_dtype)
    inputs = [(rng.standard_normal(t.shape) * config.float_scale).astype(dtype)
              for t in program.input_types]
    sem = FloatSemantics(dtype)
    worst = 0.0
    for a, b in zip(evaluate(program, inputs, sem), evaluate(candidate, inputs, sem),
                    strict=True):
        if not np.isfinite(b).all():
            return math.inf
        worst = max(worst, float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-300)))
    return worst


def verify(program: KernelGraph, candidate: KernelGraph,
           config: VerifyConfig = VerifyConfig(), target: Target = DEFAULT_TARGET) -> Verdict:
    """Is ``candidate`` equivalent to ``program``? Validity, finite-field trials, then floats."""
    broken = check(candidate, target)
    if broken:
        return Verdict(False, f"invalid candidate: {broken[0]}")
    reason = signature_mismatch(program, candidate)
    if reason:
        return Verdict(False, reason)
    eps = trial_bound(program, candidate)
    trials = trials_for(eps, config)
    seeds = np.random.SeedSequence(config.seed).spawn(trials + 1)
    for t in range(trials):
        seed = int(seeds[t].generate_state(1)[0])
        field = Field(seed)
        try:
            reason = field_trial(program, candidate, field, seed)
        except NotLaxError as e:
            return Verdict(False, f"cannot verify: {e}", t)
        if reason:
            return Verdict(False, f"finite-field trial {t + 1}/{trials}: {reason}", t + 1)
    bound = min(1.0, eps) ** trials
    if not config.float_check:
        return Verdict(True, f"{trials} finite-field trials passed", trials, bound)
    err = float_error(program, candidate, config, int(seeds[-1].generate_state(1)[0]))
    if not err <= config.float_rtol:
        return Verdict(False, f"float check: relative L2 error {err:.2e} > {config.float_rtol}",
                       trials, bound, err)
    return Verdict(True, f"{trials} finite-field trials and the float check passed", trials,
                   bound, err)
