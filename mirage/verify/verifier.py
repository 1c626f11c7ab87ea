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
smallest ``T >= min_trials`` with ``eps ** T <= target`` (default 1e-12), at most ``max_trials``.

**Verified means verified.** A verdict is *equivalent* only when the bound after its trials is
at most ``certify_bound`` (1e-9). Where ``eps`` is too large for ``max_trials`` to get there (a
chain of 20 ``square`` s has degree 2**20 > q: ``eps >= 1``), the verifier still runs
``min_trials`` trials (a mismatch proves the graphs differ) and otherwise answers *cannot
certify*, saying why. It also refuses before allocating anything when the tensors of both
graphs would take more than ``max_elements`` field elements, and stops with *cannot certify*
once ``time_limit_s`` has passed. Degrees are computed once per distinct subterm (terms are
hash-consed, see ``ExprSemantics``), so deep or doubling chains cost time linear in the graph.

For the six paper workloads ``eps`` is below 1e-3, so four trials give less than 1e-12. The
upstream artifact used p = 227, q = 113, one trial and inputs equal to the element index —
deterministic inputs that make the bound void (``tests/test_verify.py`` shows a wrong QKNorm
µGraph passing that check).

**Float check.** Both graphs run on the same random real inputs (float64 on the CPU by default)
and must agree to a relative L2 error of ``float_rtol``; a NaN or an unwritten output fails.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from mirage.errors import InputError
from mirage.ir import KernelGraph, Target, check
from mirage.ir.infer import Rule
from mirage.ir.target import resolve_target
from mirage.ops import Term, var
from mirage.ops.field import Field, NotLaxError, Q
from mirage.ops.registry import atom_heads
from mirage.ops.terms import post_order
from mirage.semantics import ExprSemantics, FieldSemantics, FloatSemantics, evaluate

# Term heads of degree one to the bound: the opaque functions (random functions, exp, a row max)
# and numbers (degree 0 really; counting 1 only loosens the bound). Read from the op rows.
RANDOM_ATOMS = atom_heads()
EQUIVALENT, NOT_EQUIVALENT, CANNOT_CERTIFY = "equivalent", "not equivalent", "cannot certify"
# Field values are int64, two arrays per tensor (Z_p and Z_q), though the Z_q half ends at an
# exp. ``allocation_elements`` over-counts (every tile of every block at once): a QKNorm b = 16
# candidate estimated at 319M elements peaked at 2.0 GiB, and the saved QKNorm b = 16 files
# hold candidates estimated at 361M. 2**30 (1.07G) admits every saved µGraph with room and keeps
# a verification under ~7 GiB by the same ratio, while a file with absurd dims is refused.
MAX_ELEMENTS = 2**30
_DEGREE_CAP = 2**64  # degrees saturate here: far above q, so the verdict is the same


@dataclass(frozen=True)
class VerifyConfig:
    """Verifier settings. ``certify_bound``: the largest false-pass bound an *equivalent*
    verdict may carry; ``time_limit_s`` and ``max_elements`` bound the work it may do."""

    target_false_pass: float = 1e-12
    min_trials: int = 3
    max_trials: int = 32
    seed: int = 0
    float_check: bool = True
    float_rtol: float = 1e-6
    float_dtype: str = "float64"
    float_scale: float = 0.1  # inputs ~ N(0, scale**2): keeps exp() of dot products finite
    certify_bound: float = 1e-9
    time_limit_s: float = 600.0
    max_elements: int = MAX_ELEMENTS

    def __post_init__(self):
        for name in ("min_trials", "max_trials", "seed", "max_elements"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (
                    0 if name == "seed" else 1):
                raise InputError(f"VerifyConfig.{name}: expected an int >= "
                                 f"{0 if name == 'seed' else 1}, got {value!r:.40}")
        if self.min_trials > self.max_trials:
            raise InputError(f"VerifyConfig.min_trials: {self.min_trials} > max_trials "
                             f"{self.max_trials}")
        for name in ("target_false_pass", "certify_bound", "float_rtol", "float_scale",
                     "time_limit_s"):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value) or value <= 0):
                raise InputError(f"VerifyConfig.{name}: expected a finite number > 0, got "
                                 f"{value!r:.40}")
        if self.float_dtype not in ("float32", "float64"):
            raise InputError(f"VerifyConfig.float_dtype: expected 'float32' or 'float64', got "
                             f"{self.float_dtype!r:.40}")


@dataclass(frozen=True)
class Verdict:
    """The verifier's answer. ``status`` is ``"equivalent"`` (certified: ``bound`` is the
    false-pass probability, at most the config's ``certify_bound``), ``"not equivalent"`` (a
    trial or the float check found a difference, or the candidate is invalid) or ``"cannot
    certify"`` (the reason starts ``cannot certify:`` or ``cannot verify:`` and says why).
    ``bool(verdict)`` is True only when certified."""

    equivalent: bool
    reason: str
    trials: int = 0
    bound: float = 1.0
    float_error: float | None = None
    status: str = ""

    def __post_init__(self):
        if self.equivalent:
            status = EQUIVALENT
        elif self.reason.startswith(("cannot certify", "cannot verify")):
            status = CANNOT_CERTIFY
        else:
            status = NOT_EQUIVALENT
        if self.status and self.status != status:
            raise InputError(f"Verdict.status: {self.status!r} contradicts the verdict "
                             f"({status!r})")
        object.__setattr__(self, "status", status)

    def __bool__(self) -> bool:
        return self.equivalent


# --- the bound ---------------------------------------------------------------------------------


def _node_degree(t: Term, degrees: list[int], atoms: frozenset[str]) -> int:
    if t.head == "var" or t.head in atoms:
        return 1  # an input or an atom
    if not t.args:
        return 0  # a constant
    if t.head in ("add", "sub"):
        return max(degrees)
    if t.head in ("mul", "div"):  # div: clearing the denominator adds its degree
        return min(_DEGREE_CAP, sum(degrees))
    if t.head == "sum":
        return degrees[0]
    raise InputError(f"cannot certify: no degree rule for term head {t.head!r}")


def _analyse(terms: list[Term]) -> tuple[list[int], list[Term], dict[int, int]]:
    """Each term's degree, the distinct ``exp`` atoms, and every subterm's degree by id.

    Iterative over the term DAG, once per distinct subterm: a term may be deeper than Python's
    stack, and a doubling chain (``square`` of ``square`` …) is a tree of 2**n leaves."""
    atoms = RANDOM_ATOMS
    degree: dict[int, int] = {}
    exps: dict[int, Term] = {}
    for t in post_order(terms):
        degree[id(t)] = _node_degree(t, [degree[id(a)] for a in t.args], atoms)
        if t.head == "exp":
            exps[id(t)] = t
    return [degree[id(t)] for t in terms], list(exps.values()), degree


def _degree(t: Term) -> int:
    """The degree of one term (see the module docstring)."""
    return _analyse([t])[0][0]


def abstract_outputs(graph: KernelGraph, sem: ExprSemantics | None = None) -> list[Term]:
    """The abstract expression of each output (inputs named ``in0``, ``in1`` … by position).
    Pass one ``sem`` for several graphs to share (and so identify) their common subterms."""
    inputs = [var(f"in{k}") for k in range(len(graph.input_ids))]
    return evaluate(graph, inputs, sem or ExprSemantics())


def bound_terms(program: KernelGraph, candidate: KernelGraph) -> tuple[int, int, int, int]:
    """``(numerator, D, E, d)`` of ``eps = numerator / q`` (numerator = C(E, 2) * d + D)."""
    sem = ExprSemantics()
    terms = abstract_outputs(program, sem) + abstract_outputs(candidate, sem)
    degrees, exps, by_id = _analyse(terms)
    d = max((by_id[id(e.args[0])] for e in exps), default=0)
    n_prog = len(program.outputs)
    big_d = max(a + b for a, b in zip(degrees[:n_prog], degrees[n_prog:], strict=True))
    e = len(exps)
    return min(_DEGREE_CAP, e * (e - 1) // 2 * d + big_d), big_d, e, d


def trial_bound(program: KernelGraph, candidate: KernelGraph) -> float:
    """``eps``: the probability that one trial passes the two graphs if they differ (1.0 when
    the bound says nothing)."""
    return min(1.0, bound_terms(program, candidate)[0] / Q)


def trials_for(eps: float, config: VerifyConfig) -> int:
    if eps >= 1.0:
        return config.max_trials
    if eps <= 0.0:
        return config.min_trials
    needed = math.ceil(math.log(config.target_false_pass) / math.log(eps))
    return min(config.max_trials, max(config.min_trials, needed))


# --- resources ---------------------------------------------------------------------------------


def allocation_elements(graph: KernelGraph) -> int:
    """Elements of one value per tensor a walk of ``graph`` holds: every kernel tensor, and
    every tile of every block at once for graph-defined ops (the walker runs the whole grid)."""
    total = 0
    for node in graph.nodes:
        total += sum(t.numel for t in node.outputs)
        if node.block is not None:
            total += node.block.num_blocks * sum(n.type.numel for n in node.block.nodes)
    return total


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
# verifies many candidates against one program with the same seeds: keep the last few (of
# programs small enough that keeping them costs little).
_PROGRAM_SIDE: dict[tuple, tuple] = {}
_PROGRAM_SIDE_SIZE = 8
_PROGRAM_SIDE_MAX_ELEMENTS = 2**24


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
    if allocation_elements(program) <= _PROGRAM_SIDE_MAX_ELEMENTS:
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


def _relative_error(a: np.ndarray, b: np.ndarray) -> float:
    scale = float(np.max(np.abs(a))) if a.size else 0.0
    scale = scale if scale > 0 else 1.0  # divide first: the norms of large values overflow
    num = np.linalg.norm((a - b) / scale)
    return float(num / max(np.linalg.norm(a / scale), 1e-300))


def float_error(program: KernelGraph, candidate: KernelGraph, config: VerifyConfig,
                seed: int) -> float:
    """Relative L2 error of the candidate against the program on random real inputs; NaN when
    the program's own output is not finite (the check says nothing then)."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(config.float_dtype)
    inputs = [(rng.standard_normal(t.shape) * config.float_scale).astype(dtype)
              for t in program.input_types]
    sem = FloatSemantics(dtype)
    worst = 0.0
    with np.errstate(all="ignore"):  # overflow is judged below, not warned about
        for a, b in zip(evaluate(program, inputs, sem), evaluate(candidate, inputs, sem),
                        strict=True):
            if not np.isfinite(a).all():
                return math.nan
            if not np.isfinite(b).all():
                return math.inf
            worst = max(worst, _relative_error(a, b))
    return worst


def _refusal(program: KernelGraph, candidate: KernelGraph, config: VerifyConfig,
             target: Target) -> Verdict | None:
    """The verdict for a pair that cannot be tried at all, or None."""
    for name, g in (("program", program), ("candidate", candidate)):
        if not isinstance(g, KernelGraph):
            raise InputError(f"verify: {name} must be a KernelGraph, got {type(g).__name__}")
    broken = check(candidate, target)
    if broken:
        return Verdict(False, f"invalid candidate: {broken[0]}")
    # The program is the user's spec: it need not fit the target's shared memory.
    broken = [e for e in check(program, target) if e.rule is not Rule.SHARED_MEMORY]
    if broken:
        return Verdict(False, f"cannot verify: invalid program: {broken[0]}")
    reason = signature_mismatch(program, candidate)
    if reason:
        return Verdict(False, reason)
    # the inputs are drawn once and shared by both graphs
    shared = sum(t.numel for t in program.input_types)
    need = 2 * (allocation_elements(program) + allocation_elements(candidate) - shared)
    if need > config.max_elements:
        return Verdict(False, f"cannot verify: the finite-field trials' {need} elements exceed "
                       f"max_elements={config.max_elements}")
    return None


def verify(program: KernelGraph, candidate: KernelGraph,
           config: VerifyConfig | None = None, target: Target | None = None) -> Verdict:
    """Is ``candidate`` equivalent to ``program``? Validity and resources, finite-field trials,
    then floats. ``target`` defaults to ``default_target()``; see the module docstring for when
    the answer is *cannot certify*."""
    config = VerifyConfig() if config is None else config
    if not isinstance(config, VerifyConfig):
        raise InputError(f"verify: config must be a VerifyConfig, got {type(config).__name__}")
    target = resolve_target(target)
    refused = _refusal(program, candidate, config, target)
    if refused is not None:
        return refused
    deadline = time.monotonic() + config.time_limit_s
    try:
        numerator, big_d, n_exp, exp_degree = bound_terms(program, candidate)
    except InputError as e:  # an op without a degree rule: no bound, no certificate
        return Verdict(False, str(e))
    eps = min(1.0, numerator / Q)
    trials = trials_for(eps, config)
    bound = eps ** trials
    certifiable = bound <= config.certify_bound
    if not certifiable:
        trials = config.min_trials  # still look for a counterexample: it proves inequivalence
    seeds = np.random.SeedSequence(config.seed).spawn(trials + 1)
    for t in range(trials):
        if time.monotonic() > deadline:
            return Verdict(False, f"cannot certify: time limit of {config.time_limit_s} s "
                           f"reached after {t} of {trials} finite-field trials", t)
        seed = int(seeds[t].generate_state(1)[0])
        field = Field(seed)
        try:
            reason = field_trial(program, candidate, field, seed)
        except NotLaxError as e:
            return Verdict(False, f"cannot verify: {e}", t)
        if reason:
            return Verdict(False, f"finite-field trial {t + 1}/{trials}: {reason}", t + 1)
    if not certifiable:
        why = (f"degree bound D={big_d}" + (f" with {n_exp} exp atoms of degree {exp_degree}"
                                           if n_exp > 1 else "")
               + f" against field size q={Q} gives eps={eps:.3g} per trial")
        return Verdict(False, f"cannot certify: {why}; after {config.max_trials} trials the "
                       f"false-pass bound would be {min(1.0, eps) ** config.max_trials:.3g} > "
                       f"{config.certify_bound:g} ({trials} trials passed)", trials,
                       min(1.0, eps) ** config.max_trials)
    stated = f"{trials} finite-field trials (false-pass bound {bound:.1e})"
    if not config.float_check:
        return Verdict(True, f"{stated} passed", trials, bound)
    if time.monotonic() > deadline:
        return Verdict(False, f"cannot certify: time limit of {config.time_limit_s} s reached "
                       "before the float check", trials, bound)
    err = float_error(program, candidate, config, int(seeds[-1].generate_state(1)[0]))
    if math.isnan(err):
        return Verdict(False, "cannot certify: float check: the program's output is not finite "
                       "on random inputs", trials, bound, err)
    if not err <= config.float_rtol:
        return Verdict(False, f"float check: relative L2 error {err:.2e} > {config.float_rtol}",
                       trials, bound, err)
    return Verdict(True, f"{stated} and the float check passed", trials, bound, err)
