"""Property tests on hostile programs: random op chains over random (often bad) dims.

Whatever the builder, the file format and the verifier are given, the only exceptions are
``MirageError`` subclasses, and a valid program is never "not equivalent" to itself. Bounded
(few examples, a deadline) so the file runs in well under a minute on two cores.
"""

from __future__ import annotations

import json
import os

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import mirage as mi  # noqa: E402
from mirage.errors import MirageError  # noqa: E402
from mirage.ir.serialize import dumps, loads  # noqa: E402
from mirage.verify import NOT_EQUIVALENT, VerifyConfig, verify  # noqa: E402

UNARY = ["exp", "square", "sqrt", "silu", "gelu", "relu", "rms_norm"]
BINARY = ["add", "sub", "mul", "div", "matmul"]
REDUCE = ["reduce_sum", "reduce_mean"]
CONFIG = VerifyConfig(time_limit_s=10.0)
# MIRAGE_FUZZ_EXAMPLES=2000 explores more (and randomly) when hunting for bugs by hand.
_EXAMPLES = int(os.environ.get("MIRAGE_FUZZ_EXAMPLES", "0"))
SETTINGS = settings(max_examples=_EXAMPLES or 40, deadline=None if _EXAMPLES else 5000,
                    derandomize=not _EXAMPLES, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

odd_scalar = st.one_of(
    st.sampled_from([0, -1, 2**31, 2**40, 2**100, 2**28]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.none(), st.text(max_size=3),
)
good_dim = st.integers(1, 6)
dim = st.one_of(good_dim, good_dim, good_dim, good_dim, odd_scalar)
dims = st.one_of(st.lists(dim, min_size=1, max_size=4), st.lists(good_dim, min_size=0,
                                                                  max_size=6), odd_scalar)
attr = st.one_of(st.integers(-3, 3), st.integers(-3, 3), odd_scalar)
step = st.one_of(
    st.tuples(st.sampled_from(UNARY), st.just(None)),
    st.tuples(st.sampled_from(BINARY), st.sampled_from(["self", "input"])),
    st.tuples(st.sampled_from(REDUCE), attr),
    st.tuples(st.just("transpose"), st.tuples(attr, attr)),
)


def build(shape, steps, name="x"):
    g = mi.new_kernel_graph("h100")
    x = g.new_input(dims=shape, dtype="fp32", name=name)
    y = x
    for op, arg in steps:
        if op in BINARY:
            y = getattr(g, op)(y, y if arg == "self" else x)
        elif op in REDUCE:
            y = getattr(g, op)(y, arg)
        elif op == "transpose":
            y = g.transpose(y, *arg)
        else:
            y = getattr(g, op)(y)
    g.mark_output(y)
    return g.kernel_graph()


@SETTINGS
@given(shape=dims, steps=st.lists(step, min_size=1, max_size=12))
def test_random_chains_verify_against_themselves(shape, steps):
    try:
        program = build(shape, steps)
    except MirageError:
        return
    again = loads(dumps([program], program)).graphs[0]
    assert again == program
    verdict = verify(program, again, CONFIG)
    assert verdict.status != NOT_EQUIVALENT, verdict.reason


@SETTINGS
@given(n=st.integers(1, 400), ops=st.lists(st.sampled_from(["exp", "square", "add", "sub",
                                                              "mul", "sqrt", "relu"]),
                                            min_size=1, max_size=3))
def test_long_chains_never_crash(n, ops):
    steps = [(ops[k % len(ops)], "input") for k in range(n)]
    program = build((2, 3), steps)
    verdict = verify(program, program, CONFIG)
    assert verdict.status != NOT_EQUIVALENT, verdict.reason


GOOD = json.loads(dumps([build((4, 4), [("exp", None), ("matmul", "self")])]))
junk = st.one_of(odd_scalar, st.lists(st.integers(-2, 2), max_size=3),
                 st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for k, v in enumerate(doc):
            yield from _paths(v, (*prefix, k))


PATHS = [p for p in _paths(GOOD) if p]


@SETTINGS
@given(path=st.sampled_from(PATHS), value=junk)
def test_garbage_in_a_file_raises_only_format_errors(path, value):
    doc = json.loads(json.dumps(GOOD))
    target = doc
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = value
    try:
        text = json.dumps(doc)
    except ValueError:
        return
    try:
        f = loads(text)
    except MirageError:
        return
    for g in f.graphs:
        assert verify(g, g, CONFIG).status != NOT_EQUIVALENT
