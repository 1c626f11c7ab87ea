"""GPU tier: the six reference µGraphs at full shapes on the CUDA device (marker ``gpu``).

Run with ``make test-gpu`` (``pytest -m gpu``); skipped without CUDA. Inputs are drawn as the
kernel benchmark draws them (``scripts/bench_kernels.py``), checked against the fp32 reference.
"""

from __future__ import annotations

import pytest
import torch

from mirage.runtime import ArgumentError, compile
from mirage.workloads import BATCHES, REFERENCES, SHAPES, WORKLOADS

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _bench():
    from scripts import bench_kernels  # the benchmark's input ranges and fp32 reference

    return bench_kernels


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MIRAGE_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.parametrize("b", BATCHES)
@pytest.mark.parametrize("name", WORKLOADS)
def test_reference_full_shapes(name, b):
    bench = _bench()
    shapes = SHAPES[name](b)
    fn = compile(REFERENCES[name](shapes, "fp16"), tune=False)
    for seed in (1, 2):
        l2, _ = bench.check(fn, name, shapes, seed, torch.device("cuda"), poison=True)
        assert l2 <= bench.TOLERANCE, f"{name} b={b} seed {seed}: relative L2 {l2:.2e}"


def test_cuda_graph_capture_and_replay():
    bench = _bench()
    shapes = SHAPES["rmsnorm"](1)
    fn = compile(REFERENCES["rmsnorm"](shapes, "fp16"), tune=False)
    gen = torch.Generator(device="cuda").manual_seed(0)
    inputs = bench.draw("rmsnorm", shapes, gen, "cuda")
    out = torch.empty(tuple(bench.reference("rmsnorm", inputs).shape), dtype=torch.float16,
                      device="cuda")
    fn(*inputs, out=[out])  # warm up outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn(*inputs, out=[out])
    fresh = bench.draw("rmsnorm", shapes, gen, "cuda")
    for x, y in zip(inputs, fresh, strict=True):
        x.copy_(y)
    out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    l2, _ = bench.errors(out, bench.reference("rmsnorm", fresh))
    assert l2 <= bench.TOLERANCE


def test_cpu_tensor_wrong_shape_and_dtype_name_the_argument():
    shapes = SHAPES["lora"](1)
    fn = compile(REFERENCES["lora"](shapes, "fp16"), tune=False)
    xs = [torch.randn(s, device="cuda", dtype=torch.float16) for s in shapes.values()]
    with pytest.raises(ArgumentError, match=r"argument 'X' \(input 0\) is on cpu"):
        fn(xs[0].cpu(), *xs[1:])
    with pytest.raises(ArgumentError, match=r"argument 'W' \(input 1\) has shape"):
        fn(xs[0], xs[1][:, :8], *xs[2:])
    with pytest.raises(ArgumentError, match=r"argument 'B' \(input 3\) has dtype torch.float32"):
        fn(*xs[:3], xs[3].float())


def test_tuning_is_cached():
    shapes = SHAPES["lora"](1)
    graph = REFERENCES["lora"](shapes, "fp16")
    first = compile(graph)
    assert first.tuned and all("timings_us" in v for v in first.tuned.values())
    second = compile(graph)
    assert second.tuned == first.tuned
    assert [x.config for x in second.launches.values()] == \
        [x.config for x in first.launches.values()]


@pytest.mark.filterwarnings("error:This process .* is multi-threaded, use of fork")
def test_superoptimize_on_the_gpu_returns_the_fastest_verified_candidate(tmp_path):
    """The API's GPU path on a program outside the six (RMSNorm with a gain vector before a
    matmul): search, verify, compile and time every kept candidate, return the fastest as a
    callable that matches the fp32 result. Its search workers are not forked from this
    torch process (Python's fork warning fails the test)."""
    import mirage as mi

    g = mi.new_kernel_graph()
    x = g.new_input((8, 1024), name="X")
    gain = g.new_input((1, 1024), name="gain")
    w = g.new_input((1024, 1024), name="W")
    g.mark_output(g.matmul(g.mul(g.rms_norm(x), gain), w))
    choice = g.superoptimize(max_kernel_ops=2, max_block_ops=5, num_workers=4, keep=4,
                             cache_dir=str(tmp_path))
    assert len(choice.timings) >= 2
    assert all(mi.verify(g.kernel_graph(), c) for c, _ in choice.timings)
    fastest = min(t.median_us for _, t in choice.timings)
    assert dict((c.digest, t.median_us) for c, t in choice.timings)[choice.graph.digest] == fastest
    gen = torch.Generator(device="cuda").manual_seed(3)
    xs, gs, ws = (torch.randn(s, generator=gen, device="cuda") * k
                  for s, k in (((8, 1024), 1.0), ((1, 1024), 1.0), ((1024, 1024), 0.03)))
    want = (xs / xs.pow(2).mean(-1, keepdim=True).sqrt() * gs) @ ws
    got = choice(xs.half(), gs.half(), ws.half()).float()
    assert ((got - want).norm() / want.norm()).item() < 1e-2


def _profiled_graph(case, b, rank):
    """A candidate timed by ``scripts.profile_tilings`` (``expected/profile-tilings-h100``)."""
    import json
    from pathlib import Path

    from mirage.ir import H100
    from mirage.ir.serialize import graph_from_dict

    path = Path(__file__).parents[2] / "expected" / "profile-tilings-h100" / "tilings.jsonl"
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if (row["case"], row["b"], row["rank"]) == (case, b, rank):
            return row, graph_from_dict(row["graph"], H100, str(path))
    raise LookupError((case, b, rank))


@pytest.mark.parametrize("tune", [False, True])
def test_a_block_near_the_shared_memory_limit_runs_with_fewer_stages(tune):
    """GQA b=16's single-kernel candidate with 512-wide KV steps passes the shared-memory
    check but asked Triton for 264 KB at its default stages (``us`` null in the profile): the
    default config now falls back to one stage, and tuning skips what does not fit."""
    row, graph = _profiled_graph("gqa", 16, 3)
    assert row["us"] is None and "shared memory" in row["error"]
    bench = _bench()
    shapes = SHAPES["gqa"](16)
    fn = compile(graph, tune=tune)
    l2, _ = bench.check(fn, "gqa", shapes, 1, torch.device("cuda"), poison=True)
    assert l2 <= bench.TOLERANCE


def test_fastest_skips_a_candidate_that_cannot_run(monkeypatch):
    import mirage.runtime
    from mirage.profile.select import fastest

    shapes = SHAPES["lora"](1)
    good = REFERENCES["lora"](shapes, "fp16")
    bad = REFERENCES["lora"](shapes, "fp16")  # the same graph, made to fail below
    real = mirage.runtime.compile

    def compile_or_fail(graph, **kwargs):
        if graph is bad:
            raise RuntimeError("no launch config ran")
        return real(graph, **kwargs)

    monkeypatch.setattr(mirage.runtime, "compile", compile_or_fail)
    choice = fastest([bad, good], input_sets=2)
    assert choice.graph is good
    assert [g is bad for g, _ in choice.failed] == [True]
    assert [g is good for g, _ in choice.timings] == [True]
    with pytest.raises(RuntimeError, match="none of 1 candidates ran"):
        fastest([bad])
