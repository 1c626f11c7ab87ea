"""The frontend's compile step: an FX graph in, one callable out, and a report of what happened.

``compile_graph`` is what the ``"mirage"`` ``torch.compile`` backend and ``optimize`` run for each
graph dynamo hands them (one per input shape key: dynamo recompiles on a new shape when
``dynamic=False``). Each captured subgraph is superoptimized; what runs it is decided here:

* CUDA GPU, at the subgraph's first call (outside dynamo's compile): the fastest of the verified
  candidates and the program itself (``mirage.profile.select.fastest``) is checked against the
  FX code and timed beside Inductor's code for the same subgraph, with the project's one
  method (``mirage.profile.timing.time_gpu``: CUDA-graph replays, events, rotated inputs,
  median). The faster is kept.
* No GPU: the best verified candidate by the cost model runs in Triton's interpreter when
  ``TRITON_INTERPRET=1`` is set, else the subgraph keeps its FX code (eager).

The rest of the graph runs with ``fallback``: Inductor (default with a GPU) or eager.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

import torch
from torch.fx import GraphModule

from mirage.errors import InputError
from mirage.torch.capture import Unsupported, describe, meta_value, tensor_bytes
from mirage.torch.partition import Piece, assemble, build_kernel_graph, probe, propose
from mirage.torch.patterns import fold_rms_norm
from mirage.torch.report import (
    EAGER,
    INDUCTOR,
    INTERPRETER,
    MIRAGE,
    CompileReport,
    Report,
    SubgraphReport,
)

# Memory bandwidth (GB/s) by GPU name, for the memory floor; the default when unknown. The H100's
# is what a copy reaches on the lent H100 80GB HBM3 (the floor Figure 7's notes use); the others
# are the datasheet peaks (not measured here).
BANDWIDTH_GBS = {"H200": 4800.0, "H100": 2990.0, "A100": 2039.0}
DEFAULT_BANDWIDTH = ("H100", 2990.0)


@dataclass(frozen=True)
class Options:
    """Search limits passed to ``superoptimize``, plus how the rest of the graph runs
    (``fallback``: "inductor" or "eager"; None picks Inductor with a GPU, eager without)."""

    max_kernel_ops: int = 3
    max_block_ops: int = 5
    time_budget_s: float = 60.0
    num_workers: int = 1
    cache_dir: str | None = None
    fallback: str | None = None
    bandwidth_gbs: float | None = None

    @classmethod
    def of(cls, values: dict | None) -> Options:
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"unknown mirage.torch option(s) {unknown}; known: {sorted(known)}")
        if values.get("cache_dir") is not None:
            values["cache_dir"] = str(values["cache_dir"])
        if values.get("fallback") not in (None, "inductor", "eager"):
            raise InputError(f"fallback: 'inductor' or 'eager', got {values['fallback']!r}")
        return cls(**values)

    def rest_mode(self, cuda: bool) -> str:
        """How code outside the subgraphs runs for a graph whose inputs are (not) on CUDA."""
        return self.fallback or ("inductor" if cuda else "eager")


def input_key(tensors) -> str:
    """The static-shape key of a compile: each input's shape and dtype."""
    return " ".join(f"{tuple(t.shape)}:{str(t.dtype).removeprefix('torch.')}"
                    if isinstance(t, torch.Tensor) else repr(t) for t in tensors)


class Backend:
    """A ``torch.compile`` backend with its own options and report:
    ``torch.compile(model, backend=Backend(time_budget_s=20))``; ``backend.report`` after."""

    def __init__(self, **options):
        self.options = Options.of(options)
        self.report = Report()
        self.programs: dict[str, GraphModule] = {}  # input key -> the compiled top graph

    def __call__(self, gm: GraphModule, example_inputs, options: dict | None = None):
        opts = Options.of({**{f.name: getattr(self.options, f.name) for f in fields(Options)},
                           **(options or {})})
        program = compile_graph(gm, example_inputs, opts, self.report)
        self.programs[self.report.last.key] = program
        return program


def compile_graph(gm: GraphModule, example_inputs, options: Options, report: Report):
    """The callable replacing ``gm``; appends a ``CompileReport`` to ``report``."""
    rec = CompileReport(key=input_key(example_inputs))
    report.compiles.append(rec)
    rest = options.rest_mode(any(isinstance(t, torch.Tensor) and t.is_cuda
                                 for t in example_inputs))
    if torch.is_grad_enabled() and any(getattr(t, "requires_grad", False)
                                       for t in example_inputs):
        rec.whole_graph_fallback = (f"needs autograd (grad mode on and an input requires grad);"
                                    f" mirage is inference-only: the whole graph runs with {rest}"
                                    " (call it under torch.no_grad())")
        rec.rest = rest
        return _rest_module(gm, rest, rec) if rest == "inductor" else gm
    fold_rms_norm(gm)
    supported, unsupported = probe(gm)
    rec.left_out = [{"node": n.name, "op": describe(n), "reason": why}
                    for n, why in unsupported.items()]
    bandwidth, rec.bandwidth_note = _bandwidth(options)

    def make(k: int, piece: Piece):
        if piece.kind == "rest":
            return _rest_module(piece.module, rest, rec)
        sub, module = _subgraph(k, piece, options, rest)
        sub.bandwidth_gbs = bandwidth
        sub.floor_us = sub.bytes_moved / (bandwidth * 1e3)
        rec.subgraphs.append(sub)
        return module

    top, pieces = assemble(gm, propose(gm, supported), make)
    rec.subgraphs.sort(key=lambda s: s.index)
    n_rest = sum(p.kind == "rest" for p in pieces)
    rec.rest = f"{n_rest} piece(s) outside the subgraphs run with {rest}"
    return top


def _bandwidth(options: Options) -> tuple[float, str]:
    if options.bandwidth_gbs:
        return options.bandwidth_gbs, f"bandwidth {options.bandwidth_gbs:.0f} GB/s (given)"
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        for key, gbs in BANDWIDTH_GBS.items():
            if key in name:
                return gbs, f"bytes moved / {gbs:.0f} GB/s ({name})"
    gpu, gbs = DEFAULT_BANDWIDTH
    return gbs, f"bytes moved / {gbs:.0f} GB/s (assumed: {gpu}; no known GPU here)"


class _Lazy(torch.nn.Module):
    """Inductor's code for a GraphModule, compiled at the first call on the real inputs (so
    strides and devices match); eager if Inductor fails, noted in the report."""

    def __init__(self, module: GraphModule, rec: CompileReport | None):
        super().__init__()
        self.module, self.rec, self.fn = module, rec, None

    def forward(self, *args):
        if self.fn is None:
            self.fn = _outside_dynamo(inductor)(self.module, args, self.rec)
        return self.fn(*args)


class _Deferred(torch.nn.Module):
    """A GPU subgraph decided at its first call: Inductor compiles and CUDA-graph timing cannot
    run inside dynamo's compile of the outer graph (its shape environment is live there)."""

    def __init__(self, decide):
        super().__init__()
        self.decide, self.impl = decide, None

    def forward(self, *args):
        if self.impl is None:
            self.impl = _outside_dynamo(self.decide)()
        return self.impl(*args)


def _outside_dynamo(fn):
    disable = getattr(torch.compiler, "disable", None) or torch._dynamo.disable
    return disable(fn)


def inductor(module: GraphModule, args, rec: CompileReport | None = None):
    """``compile_fx`` of ``module`` for ``args``; the module itself when Inductor fails."""
    from torch._inductor.compile_fx import compile_fx

    try:
        return compile_fx(module, list(args))
    except Exception as e:  # noqa: BLE001 - Inductor failing must not fail the model
        if rec is not None:
            rec.rest += f"; Inductor failed ({type(e).__name__}: {e!s:.80}), ran eager"
        return module


def _rest_module(module: GraphModule, mode: str, rec: CompileReport):
    return _Lazy(module, rec) if mode == "inductor" else module


class MirageSubgraph(torch.nn.Module):
    """Runs a compiled µGraph in place of a subgraph: views each input as the kernel graph
    declares it (lower-rank operands get leading 1s) and returns a tuple of outputs."""

    def __init__(self, fn, feed):
        super().__init__()
        self.fn, self.feed = fn, feed

    def forward(self, *args):
        out = self.fn(*(args[i].reshape(shape) for i, shape in self.feed))
        return out if isinstance(out, tuple) else (out,)


def _random_inputs(piece: Piece, device, seed: int):
    gen = torch.Generator(device=device).manual_seed(seed)
    values = []
    for a in piece.inputs:
        v = meta_value(a)
        x = torch.randn(tuple(v.shape), generator=gen, device=device, dtype=torch.float32)
        values.append((0.5 * x).to(v.dtype))
    return values


def _agrees(fn, reference, args) -> bool:
    got, want = fn(*args), reference(*args)
    tol = 1e-3 if all(w.dtype == torch.float32 for w in want) else 3e-2
    return all(torch.allclose(g.float(), w.float(), rtol=tol, atol=tol)
               for g, w in zip(got, want, strict=True))


def _subgraph(k: int, piece: Piece, options: Options, rest: str):
    """(report, module) for one captured subgraph."""
    shapes = [list(meta_value(a).shape) for a in piece.inputs]
    sub = SubgraphReport(index=k, ops=[describe(n) for n in piece.nodes], input_shapes=shapes,
                         output_shapes=[list(meta_value(o).shape) for o in piece.outputs],
                         decision=EAGER, reason="",
                         bytes_moved=sum(map(tensor_bytes, piece.inputs + piece.outputs)))
    cuda = torch.cuda.is_available() and all(meta_value(a).device.type == "cuda"
                                             for a in piece.inputs)
    fallback = _rest_module(piece.module, "inductor", None) if cuda and rest == "inductor" \
        else piece.module
    fallback_decision = INDUCTOR if fallback is not piece.module else EAGER

    def give_up(reason: str):
        sub.decision, sub.reason = fallback_decision, reason
        return sub, fallback

    try:
        built = build_kernel_graph(piece)
    except Unsupported as e:
        return give_up(f"not expressible as one kernel graph: {e}")
    sub.ops = built.ops
    try:
        found = built.builder.superoptimize(
            max_kernel_ops=options.max_kernel_ops, max_block_ops=options.max_block_ops,
            num_workers=options.num_workers, time_budget_s=options.time_budget_s,
            cache_dir=options.cache_dir, profile=False)
    except Exception as e:  # noqa: BLE001 - a failed search leaves the subgraph as it was
        return give_up(f"search failed: {type(e).__name__}: {e!s:.120}")
    if cuda:
        sub.decision, sub.reason = "pending", "decided at the first call (GPU timing)"
        return sub, _Deferred(lambda: _decide_gpu(sub, piece, built, found, give_up)[1])
    from mirage.ir.summary import summarize

    sub.candidates = sum(g.digest != built.graph.digest for g in found)
    best = found[0]
    sub.kernels = summarize(best)
    searched = (f"search found {sub.candidates} verified µGraph(s)" if sub.candidates
                else "search found no µGraph beyond the program as written")
    if os.environ.get("TRITON_INTERPRET") != "1":
        return give_up(f"no GPU: kept the FX code ({searched}; TRITON_INTERPRET=1 runs the best"
                       " one in the Triton interpreter)")
    try:
        from mirage.runtime import compile as compile_graph_

        module = MirageSubgraph(compile_graph_(best, mode="interpret"), built.feed)
        if not _agrees(module, piece.module, _random_inputs(piece, "cpu", 0)):
            return give_up(f"no GPU; {searched}, but its interpreter result differs from eager")
    except Exception as e:  # noqa: BLE001 - the interpreter failing leaves the FX code
        return give_up(f"no GPU; {searched}; interpreter failed: {type(e).__name__}: {e!s:.80}")
    sub.decision = INTERPRETER
    sub.reason = f"no GPU, TRITON_INTERPRET=1: {searched}, best by the cost model runs"
    return sub, module


def _decide_gpu(sub: SubgraphReport, piece: Piece, built, found, give_up):
    """Time Mirage's fastest verified µGraph beside Inductor's code for the same subgraph, with
    the same method and inputs; keep the faster."""
    from mirage.ir.summary import summarize
    from mirage.profile.select import fastest
    from mirage.profile.timing import METHOD, time_gpu

    sub.candidates = sum(g.digest != built.graph.digest for g in found)
    sub.timing_method = METHOD
    try:
        choice = fastest(found, program=built.graph)
    except Exception as e:  # noqa: BLE001 - no candidate could run here
        return give_up(f"no µGraph ran on this GPU: {type(e).__name__}: {e!s:.80}")
    sub.kernels = summarize(choice.graph)
    module = MirageSubgraph(choice, built.feed)
    sets = [tuple(_random_inputs(piece, "cuda", seed)) for seed in range(4)]
    if not _agrees(module, piece.module, sets[0]):
        return give_up("Mirage's µGraph disagrees with the FX code on random inputs")
    ind = inductor(piece.module, sets[0])
    try:
        sub.mirage_us = time_gpu(module, sets).median_us
        sub.inductor_us = time_gpu(ind, sets).median_us
    except Exception as e:  # noqa: BLE001 - an untimable candidate is not kept
        return give_up(f"timing failed: {type(e).__name__}: {e!s:.80}")
    faster = sub.mirage_us < sub.inductor_us
    sub.floor_fraction = sub.floor_us / min(sub.mirage_us, sub.inductor_us)
    if not faster:
        sub.decision, sub.reason = INDUCTOR, (f"slower than Inductor ({sub.mirage_us:.1f} vs "
                                              f"{sub.inductor_us:.1f} µs)")
        return sub, ind
    sub.decision = MIRAGE
    sub.reason = (f"{sub.inductor_us / sub.mirage_us:.2f}x faster than Inductor "
                  f"({sub.candidates} verified µGraph(s) searched)")
    return sub, module
