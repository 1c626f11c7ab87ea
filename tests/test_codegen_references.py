"""The six reference µGraphs through the Triton backend on the CPU.

* interpreter tier: each reference, built at reduced shapes by its builder, runs in Triton's CPU
  interpreter (fp16 and fp32) and must match ``evaluate(graph, inputs, FloatSemantics(fp32))``;
* AOT tier: every kernel generated for the canonical shapes (b = 1, 8, 16) compiles ahead of time
  for sm_80 and sm_90, specialized as a launch would be (what the interpreter cannot vouch for:
  layouts, dot shapes, shared memory).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from mirage.codegen import generate
from mirage.codegen.load import aot_compile, import_source, write_source
from mirage.ir import KernelGraph
from mirage.runtime import compile as compile_graph
from mirage.semantics.meanings import FloatSemantics
from mirage.semantics.walker import evaluate
from mirage.workloads import BATCHES, REFERENCES, WORKLOADS, reference

# Reduced shapes (the builders clip tiles to them) with tile parameters that keep several blocks
# and loop iterations, and sizes that are not powers of two where the program allows.
SMALL = {
    "rmsnorm": ({"X": (3, 96), "W": (96, 40)}, dict(tile_n=20, tile_k=24)),
    "gatedmlp": ({"X": (3, 64), "W1": (64, 48), "W2": (64, 48)}, dict(tile_n=16, tile_k=16)),
    "lora": ({"X": (2, 48), "W": (48, 40), "A": (48, 4), "B": (4, 40)},
             dict(tile_n=20, tile_k=16)),
    "gqa": ({"Q": (2, 12, 16), "K": (2, 96, 16), "V": (2, 96, 16)},
            dict(kv_splits=4, row_splits=2, tile_kv=8, combine_rows=3)),
    "qknorm": ({"Q": (2, 12, 16), "K": (2, 96, 16), "V": (2, 96, 16)},
               dict(kv_splits=4, row_splits=2, tile_kv=8, combine_rows=3)),
    "ntrans": ({"H": (3, 100), "X": (3, 100), "alpha": (3, 100)}, {}),
}
TORCH = {"fp16": torch.float16, "fp32": torch.float32}
TOL = {"fp16": 1e-2, "fp32": 1e-5}
AOT = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1",
                         reason="AOT compile needs triton imported without TRITON_INTERPRET")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MIRAGE_CACHE_DIR", str(tmp_path / "cache"))


def small_reference(name: str, dtype: str) -> KernelGraph:
    shapes, params = SMALL[name]
    return REFERENCES[name](shapes, dtype, **params)


def canonical_strides(graph: KernelGraph, node: int) -> list[int]:
    """The strides a launch passes: contiguous tensors, transposes as views."""
    n = graph.nodes[node]
    out = []
    for r in n.args:
        src = graph.nodes[r.node]
        if src.op == "transpose":
            base = list(torch.empty(graph.type_of(src.args[0]).shape, device="meta").stride())
            a, b = src.attr["dim0"], src.attr["dim1"]
            base[a], base[b] = base[b], base[a]
            out += base
        else:
            out += list(torch.empty(graph.type_of(r).shape, device="meta").stride())
    for t in n.outputs:
        out += list(torch.empty(t.shape, device="meta").stride())
    return out


def test_small_shapes_are_reduced():
    assert set(SMALL) == set(WORKLOADS)
    for name in WORKLOADS:
        graph = small_reference(name, "fp16")
        assert graph.customized_ids, name
        assert all(t.numel <= 1 << 14 for t in graph.input_types), name


@pytest.mark.parametrize("dtype", ["fp16", "fp32"])
@pytest.mark.parametrize("name", WORKLOADS)
def test_reference_interpreter(name, dtype):
    graph = small_reference(name, dtype)
    rng = np.random.default_rng(abs(hash((name, dtype))) % 2**32)
    xs = [torch.from_numpy(0.5 * rng.standard_normal(t.shape).astype(np.float32)).to(TORCH[dtype])
          for t in graph.input_types]
    (ref,) = evaluate(graph, [x.float().numpy() for x in xs], FloatSemantics(np.float32))
    fn = compile_graph(graph, mode="interpret")
    out = torch.full(ref.shape, float("nan"), dtype=TORCH[dtype])
    with np.errstate(all="ignore"):
        fn(*xs, out=[out])
    got = out.float().numpy()
    assert np.isfinite(got).all(), "unwritten output elements"
    err = np.linalg.norm(got - ref) / np.linalg.norm(ref)
    assert err <= TOL[dtype], f"{name} {dtype}: relative L2 error {err:.2e}"


@AOT
@pytest.mark.parametrize("capability", [80, 90])
@pytest.mark.parametrize("b", BATCHES)
@pytest.mark.parametrize("name", WORKLOADS)
def test_reference_aot(name, b, capability, tmp_path):
    graph = reference(name, b)
    module = generate(graph)
    mod = import_source(write_source(module, tmp_path))
    assert module.kernels
    for spec in module.kernels:
        kernel = aot_compile(mod, spec, capability, strides=canonical_strides(graph, spec.node))
        assert kernel.asm["cubin"], spec.name
        assert kernel.metadata.shared <= 227 * 1024


@AOT
@pytest.mark.parametrize("name", WORKLOADS)
def test_small_reference_aot_unspecialized(name, tmp_path):
    """Padded, masked tiles with generic (unspecialized) strides compile too."""
    graph = small_reference(name, "fp16")
    module = generate(graph)
    mod = import_source(write_source(module, tmp_path))
    for spec in module.kernels:
        aot_compile(mod, spec, 90)


@AOT
def test_memory_bound_loop_is_pipelined_and_fused(tmp_path):
    """RMSNorm's loop streams W with cp.async and has no per-iteration reduction (the RMS sum
    is deferred to after the loop): the two properties its speed depends on."""
    graph = reference("rmsnorm", 1)
    module = generate(graph)
    mod = import_source(write_source(module, tmp_path))
    (spec,) = module.kernels
    kernel = aot_compile(mod, spec, 90, strides=canonical_strides(graph, spec.node))
    assert "cp.async" in kernel.asm["ptx"]
    loop = kernel.asm["ttgir"].split("scf.for", 1)[1].split("scf.yield", 1)[0]
    assert "tt.reduce" not in loop
    assert "# the deferred sum over the last dim" in module.source
