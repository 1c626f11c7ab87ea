"""User names in generated code: any printable name, never a syntax error, never a collision."""

from __future__ import annotations

import ast

import numpy as np
import pytest

import mirage as mi
from mirage.codegen import generate
from mirage.codegen.triton_gen import identifier, tensor_name
from mirage.ir import Ref

N = None
ODD = ["x.1", "Вход", "ﬁ", "fi", "class", "tl", "1abc", "a b", "x" * 128, "é", "²", "out0",
       "stride_x0", "", "λ-ℌ", "\\", '"""', "#", "x\u00a0y"]


def elementwise(names: list[str]):
    """One graph-defined kernel adding two inputs named ``names`` row tile by row tile."""
    g = mi.new_kernel_graph()
    a = g.new_input(dims=(4, 16), dtype="fp32", name=names[0])
    b = g.new_input(dims=(4, 16), dtype="fp32", name=names[1])
    tb = mi.new_threadblock_graph((2, 1, 1), 1)
    ta = tb.new_input(a, (0, N, N), N)
    tbb = tb.new_input(b, (0, N, N), N)
    tb.new_output(tb.forloop_accum(tb.add(ta, tbb)), (0, N, N))
    (o,) = g.customized([a, b], tb)
    g.mark_output(o)
    return g.kernel_graph()


@pytest.mark.parametrize("name", ODD)
def test_generated_module_compiles_for_odd_names(name):
    graph = elementwise([name, name[:127] + "_"])
    module = generate(graph)
    tree = ast.parse(module.source)  # SyntaxError would fail the test
    compile(tree, "<generated>", "exec")
    (spec,) = module.kernels
    assert all(p.isidentifier() and p.isascii() for p in spec.params)
    assert len(set(spec.params)) == len(spec.params)


def test_names_equal_after_nfkc_stay_distinct():
    module = generate(elementwise(["ﬁ", "fi"]))
    (spec,) = module.kernels
    assert len(set(spec.params)) == 3


def test_identifier_is_ascii_and_bounded():
    taken: set[str] = set()
    out = [identifier(n, taken) for n in ["Вход", "вход", "x" * 500, "if", "²"]]
    assert all(o.isidentifier() and o.isascii() and len(o) <= 60 for o in out)
    assert len(set(out)) == len(out)


def test_tensor_name_of_a_long_transpose_chain():
    g = mi.new_kernel_graph()
    y = g.new_input(dims=(4, 4), name="x")
    for _ in range(2000):
        y = g.transpose(y)
    g.mark_output(y)
    graph = g.kernel_graph()
    assert tensor_name(graph, Ref(2000)).startswith("x_t_t")


def test_odd_names_run_in_the_interpreter():
    pytest.importorskip("triton")
    torch = pytest.importorskip("torch")
    from mirage.runtime import compile as compile_graph

    graph = elementwise(["x.1", "Вход"])
    fn = compile_graph(graph, mode="interpret")
    a = np.arange(64, dtype=np.float32).reshape(4, 16)
    b = np.ones((4, 16), dtype=np.float32)
    out = fn(torch.from_numpy(a), torch.from_numpy(b))
    out = out[0] if isinstance(out, (list, tuple)) else out
    np.testing.assert_allclose(out.numpy(), a + b)


def test_a_deep_block_graph_generates_compilable_code():
    g = mi.new_kernel_graph()
    a = g.new_input(dims=(4, 16), dtype="fp32", name="a")
    tb = mi.new_threadblock_graph((2, 1, 1), 1)
    t = y = tb.new_input(a, (0, N, N), N)
    for k in range(1000):
        y = tb.add(y, t) if k % 2 else tb.square(y)
    tb.new_output(tb.forloop_accum(y), (0, N, N))
    (o,) = g.customized([a], tb)
    g.mark_output(o)
    compile(generate(g.kernel_graph()).source, "<generated>", "exec")
