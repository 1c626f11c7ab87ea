"""One walker, three meanings: float agrees with plain torch; the tiling matches its definition."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mirage.ir import BlockGraph, TensorType
from mirage.ir.infer import block_input
from mirage.semantics import FloatSemantics, evaluate
from mirage.semantics.walker import input_index, loop_slice, tile_all_blocks
from mirage.verify import abstract_outputs
from mirage.workloads import SHAPES, WORKLOADS, program, reference


def _rms_norm(x):
    return x / x.square().mean(-1, keepdim=True).sqrt()


def _attention(q, k, v):
    e = torch.exp(q @ k.transpose(1, 2))
    return (e / e.sum(2, keepdim=True)) @ v


TORCH_PROGRAMS = {
    "gqa": _attention,
    "qknorm": lambda q, k, v: _attention(_rms_norm(q), _rms_norm(k), v),
    "rmsnorm": lambda x, w: _rms_norm(x) @ w,
    "lora": lambda x, w, a, b: x @ w + (x @ a) @ b,
    "gatedmlp": lambda x, w1, w2: torch.nn.functional.silu(x @ w1) * (x @ w2),
    "ntrans": lambda h, x, alpha: _rms_norm(x + alpha * (_rms_norm(h) - x)),
}


@pytest.mark.parametrize("case", WORKLOADS)
def test_float_semantics_of_reference_matches_torch_fp32(case):
    rng = np.random.default_rng(7)
    shapes = SHAPES[case](1)
    inputs = [(rng.standard_normal(s) * 0.1).astype(np.float32) for s in shapes.values()]
    (got,) = evaluate(reference(case, 1), inputs, FloatSemantics(np.float32))
    want = TORCH_PROGRAMS[case](*(torch.from_numpy(x) for x in inputs)).numpy()
    assert got.dtype == np.float32
    assert np.linalg.norm(got - want) / np.linalg.norm(want) <= 1e-5


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_all_blocks_tiling_equals_the_per_block_definition(data):
    rank = data.draw(st.integers(1, 3))
    grid = tuple(data.draw(st.sampled_from([1, 2, 3])) for _ in range(3))
    loop = data.draw(st.sampled_from([1, 2, 4]))
    dims = list(range(rank))
    imap = []
    for _axis in range(3):
        free = [d for d in dims if d not in imap]
        choice = data.draw(st.sampled_from([None, *free]))
        imap.append(choice)
    fmap = data.draw(st.sampled_from([None, *dims]))
    shape = []
    for d in dims:
        size = data.draw(st.sampled_from([1, 2, 3]))
        for axis, mapped in enumerate(imap):
            if mapped == d:
                size *= grid[axis]
        if fmap == d:
            size *= loop
        shape.append(size)
    node = block_input(TensorType(tuple(shape)), 0, grid, loop, tuple(imap), fmap)
    block = BlockGraph(grid, loop, (node,))
    x = np.arange(np.prod(shape)).reshape(shape)
    tiled = tile_all_blocks(x, node, grid)
    for it in range(loop):
        chunk = tiled[loop_slice(node, it)]
        for bid in itertools.product(*(range(g) for g in grid)):
            view = np.broadcast_to(chunk, (*grid, *chunk.shape[3:]))[bid]
            np.testing.assert_array_equal(view, x[input_index(block, node, bid, it)])


def test_abstract_expressions_of_program_and_reference():
    (prog,) = abstract_outputs(program("rmsnorm", 1))
    (ref,) = abstract_outputs(reference("rmsnorm", 1))
    assert str(prog) == "sum(4096, mul(div(in0, sqrt(sum(4096, mul(in0, in0)))), in1))"
    assert str(ref) == (
        "div(sum(16, sum(256, mul(in0, in1))), sqrt(sum(16, sum(256, mul(in0, in0)))))"
    )
