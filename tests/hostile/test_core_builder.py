"""Hostile arguments to the builder: exact ints, printable names, valid maps and attributes,
checked superoptimize arguments, and the default target resolved at call time."""

from __future__ import annotations

import re

import numpy as np
import pytest

import mirage as mi
from mirage.errors import InputError
from mirage.ir import A100, H100, IRError, Rule
from mirage.ir.target import default_target

N = None


def raises(cls, *parts):
    """pytest.raises matching every literal ``part`` in the message, in order."""
    return pytest.raises(cls, match=".*".join(re.escape(p) for p in parts))


@pytest.mark.parametrize("dims, parts", [
    ((16, 16.7), ("dims[1]", "expected an int, got float 16.7")),
    ((16, 16.0), ("dims[1]", "expected an int, got float 16.0")),
    ((16, "16"), ("dims[1]", "expected an int, got str '16'")),
    ((True, 16), ("dims[0]", "expected an int, got bool True")),
    ((16, None), ("dims[1]", "expected an int, got NoneType None")),
    ((16, np.float64(16)), ("dims[1]", "expected an int, got float64")),
    ((16, 0), ("dims[1]", "0 is below the minimum 1")),
    ((-4, 16), ("dims[0]", "-4 is below the minimum 1")),
    ((2**31, 1), ("dims[0]", "exceeds the maximum 2147483647")),
    ((2**21, 2**21), ("dims", "elements > the limit of 2**40")),
    ("16", ("dims", "expected a list of ints, got str '16'")),
    (16, ("dims", "expected a list of ints, got int 16")),
    ((), ("dims", "must have 1-4 positive dims")),
    ((1, 1, 1, 1, 1), ("dims", "must have 1-4 positive dims")),
])
def test_bad_dims(dims, parts):
    g = mi.new_kernel_graph()
    with raises(IRError, *parts):
        g.new_input(dims=dims)


@pytest.mark.parametrize("dtype", ["fp64", ["fp16"], None])
def test_bad_dtype(dtype):
    with raises(IRError, "dtype", "unknown dtype"):
        mi.new_kernel_graph().new_input(dims=(4,), dtype=dtype)


@pytest.mark.parametrize("name", ["x.1", "Вход", "a b", "x" * 128, "class", "1abc"])
def test_printable_names_are_accepted(name):
    g = mi.new_kernel_graph()
    x = g.new_input(dims=(4,), name=name)
    g.mark_output(g.exp(x))
    assert g.kernel_graph().nodes[0].name == name


@pytest.mark.parametrize("name, parts", [
    ("a\nb", ("name", "character 1 (0xa) is not printable")),
    ("tab\there", ("name", "not printable")),
    ("zero\u200bwidth", ("name", "character 4 (0x200b) is not printable")),
    ("x" * 129, ("name", "129 characters > the limit of 128")),
    (5, ("name", "expected a string, got int 5")),
])
def test_bad_names(name, parts):
    with raises(IRError, *parts):
        mi.new_kernel_graph().new_input(dims=(4,), name=name)


def test_duplicate_input_names_are_refused():
    g = mi.new_kernel_graph()
    g.new_input(dims=(4,), name="x")
    with raises(IRError, "name", "'x' is already an input"):
        g.new_input(dims=(4,), name="x")


def test_default_names_avoid_user_names():
    g = mi.new_kernel_graph()
    g.new_input(dims=(4,), name="in1")
    b = g.new_input(dims=(4,))
    c = g.new_input(dims=(4,))
    names = [n.name for n in g._nodes]
    assert len(set(names)) == 3 and b.ref != c.ref


@pytest.mark.parametrize("grid, loop, parts", [
    ((2.0, 1, 1), 1, ("grid_dim[0]", "expected an int, got float 2.0")),
    (("2", 1, 1), 1, ("grid_dim[0]", "expected an int, got str '2'")),
    ((0, 1, 1), 1, ("grid_dim[0]", "below the minimum 1")),
    ((1, 1, 1, 1), 1, ("grid_dim", "expected 1-3 grid sizes, got 4")),
    ("8", 1, ("grid_dim", "expected a list of ints")),
    ((1, 1, 1), 1.5, ("forloop_range", "expected an int, got float 1.5")),
    ((1, 1, 1), 0, ("forloop_range", "below the minimum 1")),
    ((1, 1, 1), None, ("forloop_range", "expected an int, got NoneType")),
])
def test_bad_grids(grid, loop, parts):
    with raises(IRError, *parts):
        mi.new_threadblock_graph(grid, loop)


@pytest.mark.parametrize("imap, fmap, parts", [
    ((0.0, N, N), N, ("imap[0]", "expected an int, got float 0.0")),
    (("0", N, N), N, ("imap[0]", "expected an int, got str '0'")),
    ((True, N, N), N, ("imap[0]", "expected an int, got bool True")),
    ((0, N), N, ("imap must name a dim or None for each of 3 grid axes",)),
    ((5, N, N), N, ("imap (5, None, None) names a dim outside rank 2",)),
    ((0, 0, N), N, ("maps two grid axes to one dim",)),
    ("012", N, ("imap", "expected a list of ints")),
    ((N, N, N), 1.5, ("fmap", "expected an int, got float 1.5")),
    ((N, N, N), 2, ("fmap 2 names a dim outside rank 2",)),
])
def test_bad_input_maps(imap, fmap, parts):
    g = mi.new_kernel_graph()
    x = g.new_input(dims=(8, 8), name="x")
    tb = mi.new_threadblock_graph((2, 1, 1), 2)
    with raises(IRError, *parts):
        tb.new_input(x, imap, fmap)


@pytest.mark.parametrize("omap, parts", [
    ((True, N, N), ("omap[0]", "expected an int, got bool True")),
    ((0.5, N, N), ("omap[0]", "expected an int, got float 0.5")),
    ((0, N, N, N), ("omap must name a dim",)),
])
def test_bad_output_maps(omap, parts):
    g = mi.new_kernel_graph()
    x = g.new_input(dims=(8, 8), name="x")
    tb = mi.new_threadblock_graph((2, 1, 1), 1)
    t = tb.forloop_accum(tb.new_input(x, (0, N, N), N))
    with raises(IRError, *parts):
        tb.new_output(t, omap)


@pytest.mark.parametrize("call, cls, parts", [
    (lambda g, x: g.reduce_sum(x, 1.5), IRError, ("attrs.dim", "expected an int, got float 1.5")),
    (lambda g, x: g.reduce_sum(x, "1"), IRError, ("attrs.dim", "got str '1'")),
    (lambda g, x: g.reduce_sum(x, True), IRError, ("attrs.dim", "got bool True")),
    (lambda g, x: g.reduce_sum(x, 7), IRError, ("dim 7 out of range for shape (8, 8)",)),
    (lambda g, x: g.transpose(x, None, 1), IRError, ("attrs.dim0", "got NoneType None")),
    (lambda g, x: g.exp("x"), InputError, ("operand 'x' is not a tensor of this kernel graph",)),
    (lambda g, x: g.add(x, mi.new_kernel_graph().new_input(dims=(8, 8))), InputError,
     ("is not a tensor of this kernel graph",)),
    (lambda g, x: g.customized([x], "tb"), InputError, ("expected a block graph",)),
])
def test_bad_kernel_ops(call, cls, parts):
    g = mi.new_kernel_graph()
    x = g.new_input(dims=(8, 8), name="x")
    with raises(cls, *parts):
        call(g, x)


def test_bad_accumulator_kind():
    g = mi.new_kernel_graph()
    x = g.new_input(dims=(8, 8), name="x")
    tb = mi.new_threadblock_graph((1, 1, 1), 1)
    t = tb.new_input(x, (N, N, N), N)
    with raises(InputError, "kind: unknown accumulator 'max'"):
        tb.forloop_accum(t, "max")


def _program():
    g = mi.new_kernel_graph()
    x = g.new_input(dims=(8, 8), name="x")
    g.mark_output(g.exp(x))
    return g


@pytest.mark.parametrize("kwargs, parts", [
    ({"max_kernel_ops": 0}, ("max_kernel_ops", "expected an int >= 1")),
    ({"max_kernel_ops": 2.5}, ("max_kernel_ops", "got float 2.5")),
    ({"max_block_ops": True}, ("max_block_ops", "got bool True")),
    ({"num_workers": 0}, ("num_workers", "expected an int >= 1")),
    ({"keep": -1}, ("keep", "expected an int >= 1")),
    ({"time_budget_s": 0}, ("time_budget_s", "expected a finite number > 0")),
    ({"time_budget_s": float("nan")}, ("time_budget_s", "finite number")),
    ({"time_budget_s": float("inf")}, ("time_budget_s", "finite number")),
    ({"time_budget_s": "10"}, ("time_budget_s", "finite number")),
    ({"target": "b200"}, ("target", "expected a Target or one of a100, h100")),
    ({"target": 5}, ("target", "got 5")),
    ({"grid_dims": (2.5,)}, ("grid_dims[0]", "expected an int, got float 2.5")),
    ({"profile": "yes"}, ("profile", "expected True, False or None")),
])
def test_bad_superoptimize_arguments(kwargs, parts):
    with raises(InputError, *parts):
        _program().superoptimize(**kwargs)


def test_profile_without_gpu_is_a_clear_error(monkeypatch):
    import mirage.api.builder as builder

    monkeypatch.setattr(builder, "_cuda_available", lambda: False)
    with raises(InputError, "no CUDA GPU is available", "profile=False returns"):
        _program().superoptimize(profile=True, time_budget_s=5)


def test_default_target_is_resolved_at_call_time(monkeypatch):
    monkeypatch.setenv("MIRAGE_TARGET", "a100")
    assert mi.new_kernel_graph().target is A100
    monkeypatch.setenv("MIRAGE_TARGET", "h100")
    assert mi.new_kernel_graph().target is H100 is default_target()
    assert mi.new_kernel_graph("a100").target is A100


def test_unknown_environment_target_is_refused(monkeypatch):
    monkeypatch.setenv("MIRAGE_TARGET", "v100")
    with raises(InputError, "MIRAGE_TARGET='v100'"):
        mi.new_kernel_graph()


def test_rules_name_the_broken_rule():
    with pytest.raises(IRError) as e:
        mi.new_kernel_graph().new_input(dims=(4,), name="a\x00")
    assert e.value.rule is Rule.BAD_NAME
