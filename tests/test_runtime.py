"""``mirage.runtime.compile``: argument checks, allocation, kernel-level torch ops, the cache.

All on the CPU, through Triton's interpreter (``mode="interpret"``); the same checks on the GPU
are in ``tests/gpu``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mirage.codegen import generate
from mirage.codegen.triton_gen import storage_dtypes
from mirage.ir import Ref
from mirage.runtime import ArgumentError, Config, compile
from mirage.runtime import cache as rcache
from mirage.runtime.tuning import candidates, heuristic
from mirage.semantics.meanings import FloatSemantics
from mirage.semantics.walker import evaluate
from mirage.workloads import PROGRAMS, REFERENCES

SHAPES = {"X": (3, 64), "W": (64, 32)}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MIRAGE_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def rmsnorm():
    graph = REFERENCES["rmsnorm"](SHAPES, "fp32", tile_n=16, tile_k=16)
    return graph, compile(graph, mode="interpret")


def _inputs(graph, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(t.shape, generator=gen).to(dtype) for t in graph.input_types]


def _reference(graph, xs):
    return evaluate(graph, [x.float().numpy() for x in xs], FloatSemantics(np.float64))


def test_compiled_graph_computes_the_float_semantics(rmsnorm):
    graph, fn = rmsnorm
    xs = _inputs(graph)
    (ref,) = _reference(graph, xs)
    np.testing.assert_allclose(fn(*xs).numpy(), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bad, message", [
    (lambda xs: xs[:1], "takes 2 inputs (X, W), got 1"),
    (lambda xs: [xs[0], xs[1].numpy()], "argument 'W' (input 1) must be a torch.Tensor"),
    (lambda xs: [xs[0][:2], xs[1]], "argument 'X' (input 0) has shape (2, 64), expected (3, 64)"),
    (lambda xs: [xs[0], xs[1].half()], "argument 'W' (input 1) has dtype torch.float16"),
    (lambda xs: [xs[0].to("meta"), xs[1]], "argument 'X' (input 0) is on meta, expected cpu"),
])
def test_wrong_arguments_raise_naming_the_argument(rmsnorm, bad, message):
    graph, fn = rmsnorm
    with pytest.raises(ArgumentError) as err:
        fn(*bad(_inputs(graph)))
    assert message in str(err.value)
    assert isinstance(err.value, TypeError) and isinstance(err.value, ValueError)


def test_out_is_checked_and_written_in_place(rmsnorm):
    graph, fn = rmsnorm
    xs = _inputs(graph)
    out = torch.full((3, 32), float("nan"))
    fn(*xs, out=[out])
    assert torch.isfinite(out).all()
    with pytest.raises(ArgumentError, match=r"out\[0\] has shape"):
        fn(*xs, out=[torch.empty(3, 31)])
    with pytest.raises(ArgumentError, match="out= needs 1 tensors"):
        fn(*xs, out=[])


def test_intermediates_are_allocated_once():
    graph = REFERENCES["gqa"]({"Q": (2, 8, 16), "K": (2, 32, 16), "V": (2, 32, 16)}, "fp32",
                              kv_splits=2, row_splits=1, tile_kv=8, combine_rows=2)
    fn = compile(graph, mode="interpret")
    buffers = dict(fn._buffers)
    assert buffers and all(r not in graph.outputs for r in buffers)
    first = _inputs(graph, 1)
    second = _inputs(graph, 2)
    out1 = fn(*first).clone()
    out2 = fn(*second)
    assert {r: t.data_ptr() for r, t in fn._buffers.items()} == \
        {r: t.data_ptr() for r, t in buffers.items()}
    np.testing.assert_allclose(out1.numpy(), _reference(graph, first)[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out2.numpy(), _reference(graph, second)[0], rtol=1e-4, atol=1e-6)


def test_partial_sums_between_kernels_are_stored_in_fp32():
    graph = REFERENCES["gqa"]({"Q": (2, 8, 16), "K": (2, 32, 16), "V": (2, 32, 16)}, "fp16",
                              kv_splits=2, row_splits=1, tile_kv=8, combine_rows=2)
    storage = storage_dtypes(graph)
    first, second = graph.customized_ids
    assert storage[Ref(first, 0)] == storage[Ref(first, 1)] == "fp32"
    assert storage[graph.outputs[0]] == "fp16"
    fn = compile(graph, mode="interpret")
    assert {t.dtype for t in fn._buffers.values()} == {torch.float32}


def test_program_without_graph_defined_ops_runs_on_torch():
    """Pre-defined kernel ops (matmul, transpose as a view, exp, reduce_sum, rms_norm...) call
    torch: the input programs themselves compile and match the float semantics."""
    for name, shapes in [
        ("gqa", {"Q": (2, 8, 16), "K": (2, 32, 16), "V": (2, 32, 16)}),
        ("qknorm", {"Q": (2, 8, 16), "K": (2, 32, 16), "V": (2, 32, 16)}),
        ("lora", {"X": (2, 32), "W": (32, 16), "A": (32, 4), "B": (4, 16)}),
        ("gatedmlp", {"X": (2, 32), "W1": (32, 16), "W2": (32, 16)}),
        ("ntrans", {"H": (2, 24), "X": (2, 24), "alpha": (2, 24)}),
    ]:
        graph = PROGRAMS[name](shapes, "fp32")
        fn = compile(graph, mode="interpret")
        assert not fn.launches
        xs = [0.5 * x for x in _inputs(graph)]
        (ref,) = _reference(graph, xs)
        np.testing.assert_allclose(fn(*xs).numpy(), ref, rtol=1e-4, atol=1e-6, err_msg=name)


def test_mixed_graph_of_torch_ops_and_kernels():
    """A transpose view feeding a generated kernel (the GQA reference) reads through strides."""
    graph = REFERENCES["gqa"]({"Q": (2, 8, 16), "K": (2, 32, 16), "V": (2, 32, 16)}, "fp32",
                              kv_splits=2, row_splits=2, tile_kv=8, combine_rows=2)
    assert any(n.op == "transpose" for n in graph.nodes)
    fn = compile(graph, mode="interpret")
    xs = [0.5 * x for x in _inputs(graph, 3)]
    np.testing.assert_allclose(fn(*xs).numpy(), _reference(graph, xs)[0], rtol=1e-4, atol=1e-6)


def test_cache_entry_keys_and_contents(tmp_path):
    graph = REFERENCES["rmsnorm"](SHAPES, "fp16", tile_n=16, tile_k=16)
    a = compile(graph, mode="interpret", cache_dir=tmp_path)
    b = compile(graph, mode="interpret", cache_dir=tmp_path)
    assert a.cache_dir == b.cache_dir
    assert (a.cache_dir / f"kernels_{graph.digest[:16]}.py").exists()
    meta = rcache.read_json(a.cache_dir / "meta.json")
    assert meta["digest"] == graph.digest and meta["gpu"] == "interpreter"
    assert meta["triton"] == rcache.triton_version()
    # another GPU, another entry; another graph, another entry
    assert rcache.entry_dir(graph.digest, "H100-sm90", tmp_path) != a.cache_dir
    other = REFERENCES["rmsnorm"](SHAPES, "fp16", tile_n=32, tile_k=16)
    assert compile(other, mode="interpret", cache_dir=tmp_path).cache_dir != a.cache_dir


def test_torn_cache_files_are_misses(tmp_path):
    path = tmp_path / "tuned.json"
    path.write_text("{not json")
    assert rcache.read_json(path) == {}
    assert rcache.read_json(tmp_path / "missing.json") == {}


def test_gpu_mode_without_cuda_says_so():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    graph = REFERENCES["rmsnorm"](SHAPES, "fp16", tile_n=16, tile_k=16)
    with pytest.raises(RuntimeError, match="mode='gpu' needs CUDA"):
        compile(graph, mode="gpu")
    with pytest.raises(ValueError, match="mode must be"):
        compile(graph, mode="tpu")


def test_launch_configs():
    for name in ("rmsnorm", "gqa", "ntrans"):
        graph = REFERENCES[name](
            {"rmsnorm": SHAPES, "gqa": {"Q": (2, 8, 16), "K": (2, 32, 16), "V": (2, 32, 16)},
             "ntrans": {"H": (2, 24), "X": (2, 24), "alpha": (2, 24)}}[name], "fp16")
        for spec in generate(graph).kernels:
            first = heuristic(spec)
            options = candidates(spec)
            assert options[0] == first and len(set(options)) == len(options)
            assert all(isinstance(c, Config) and c.num_warps in (1, 2, 4, 8) for c in options)
            if spec.forloop_range == 1:
                assert {c.num_stages for c in options} == {1}
