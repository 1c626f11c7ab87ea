"""A compiled µGraph: a callable on torch tensors.

``CompiledGraph`` walks the kernel graph once per call: pre-defined ops run through their
record's ``torch_fn`` (cuBLAS for matmul; ``transpose`` is a view, never a copy), graph-defined
ops launch their generated Triton kernel. Intermediates are allocated once, at compile time, so
a call allocates only its outputs (or none, with ``out=``) and does no host synchronization: it
can be captured in a CUDA graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mirage.codegen import KernelSpec, generate
from mirage.codegen.load import import_source, kernel_object, write_source
from mirage.codegen.triton_gen import storage_dtypes
from mirage.ir import KernelGraph, Ref, TensorType, validate
from mirage.ir.target import TARGETS
from mirage.ops import Prop, get
from mirage.runtime import cache, tuning
from mirage.runtime.tuning import Config

TORCH_DTYPE_NAMES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


class ArgumentError(TypeError, ValueError):
    """A compiled µGraph was called with an argument it cannot take; the message names it."""


def torch_dtype(dtype: str):
    import torch

    return getattr(torch, TORCH_DTYPE_NAMES[dtype])


@dataclass
class Launch:
    """One generated kernel with its launch config; called with operands then outputs."""

    spec: KernelSpec
    fn: object  # JITFunction or InterpretedFunction
    config: Config

    def args(self, tensors: Sequence) -> list:
        strides = [s for t in tensors for s in t.stride()]
        return [*tensors, *strides]

    def __call__(self, tensors: Sequence, config: Config | None = None) -> None:
        cfg = config or self.config
        try:
            self.fn[self.spec.grid](*self.args(tensors), **dict(self.spec.constexprs),
                                    num_warps=cfg.num_warps, num_stages=cfg.num_stages)
        except Exception as e:
            # The shared-memory estimates behind the default config (``ir.check``,
            # ``tuning.fits``) can fall short of what Triton's pipeliner allocates (an H100
            # attention block near the limit asked for 264 KB): the default then drops to one
            # stage, the least a loop can ask for. An explicit config (tuning) fails as asked.
            if config is not None or cfg.num_stages == 1 or type(e).__name__ != "OutOfResources":
                raise
            self.config = Config(cfg.num_warps, 1)
            self(tensors)

    def warmup(self, tensors: Sequence, config: Config) -> None:
        """Compile for ``config`` without launching."""
        self.fn.warmup(*self.args(tensors), grid=self.spec.grid, **dict(self.spec.constexprs),
                       num_warps=config.num_warps, num_stages=config.num_stages)


class CompiledGraph:
    """``graph`` compiled for ``mode`` ("gpu" or "interpret") on ``device``.

    Call it with one tensor per kernel-graph input, in order. It returns the single output, or a
    tuple when the graph has several; ``out=`` (a sequence of tensors) writes them in place.
    """

    def __init__(self, graph: KernelGraph, mode: str, device, cache_dir: Path | None = None,
                 tune: bool = True):
        self.graph = graph
        self.mode = mode
        self.device = device
        for node in graph.nodes:
            if node.op not in ("input", "customized") and get(node.op).torch_fn is None:
                raise NotImplementedError(f"kernel-level op {node.op!r} has no torch_fn in its "
                                          "registry record: the runtime cannot run it")
        self.generated = generate(graph, interpret=mode == "interpret")
        self.storage = storage_dtypes(graph)
        self.cache_dir = cache.entry_dir(graph.digest, cache.gpu_id(device), cache_dir)
        module = import_source(write_source(self.generated, self.cache_dir))
        self.launches: dict[int, Launch] = {
            spec.node: Launch(spec, kernel_object(module, spec, mode), tuning.heuristic(spec))
            for spec in self.generated.kernels
        }
        self.input_names = [n.name or f"in{k}" for k, n in
                            enumerate(graph.nodes[i] for i in graph.input_ids)]
        self.input_types = graph.input_types
        self.output_types = graph.output_types
        self._output_refs = list(dict.fromkeys(graph.outputs))
        self._buffers = self._allocate_intermediates()
        self.tuned: dict[str, dict] = {}
        if mode == "gpu":
            self._load_or_tune(tune)

    # --- calling -----------------------------------------------------------------------------

    def __call__(self, *args, out: Sequence | None = None):
        self.check_inputs(args)
        outputs = self._check_out(out) if out is not None else None
        values = self._execute(args, outputs)
        result = tuple(values[r] for r in self.graph.outputs)
        return result[0] if len(result) == 1 else result

    def check_inputs(self, args: Sequence) -> None:
        """Raise ``ArgumentError`` naming the first argument of the wrong kind."""
        names = self.input_names
        if len(args) != len(names):
            raise ArgumentError(f"compiled µGraph takes {len(names)} inputs ({', '.join(names)})"
                                f", got {len(args)}")
        for k, (t, want) in enumerate(zip(args, self.input_types, strict=True)):
            self._check_tensor(t, want, f"argument {names[k]!r} (input {k})")

    def _check_tensor(self, t, want: TensorType, what: str) -> None:
        import torch

        if not isinstance(t, torch.Tensor):
            raise ArgumentError(f"{what} must be a torch.Tensor, got {type(t).__name__}")
        if tuple(t.shape) != want.shape:
            raise ArgumentError(f"{what} has shape {tuple(t.shape)}, expected {want.shape}")
        if t.dtype != torch_dtype(want.dtype):
            raise ArgumentError(f"{what} has dtype {t.dtype}, expected {torch_dtype(want.dtype)}"
                                f" ({want.dtype})")
        if t.device != self.device:
            hint = " (interpreter mode runs on CPU tensors)" if self.mode == "interpret" else ""
            raise ArgumentError(f"{what} is on {t.device}, expected {self.device}{hint}")

    def _check_out(self, out: Sequence) -> dict[Ref, object]:
        refs = self._output_refs
        if len(out) != len(refs):
            raise ArgumentError(f"out= needs {len(refs)} tensors, got {len(out)}")
        for k, (t, ref) in enumerate(zip(out, refs, strict=True)):
            self._check_tensor(t, self.graph.type_of(ref), f"out[{k}]")
        return dict(zip(refs, out, strict=True))

    def _execute(self, args: Sequence, outputs: dict | None) -> dict[Ref, object]:
        import torch

        values: dict[Ref, object] = {}
        feed = iter(args)
        for i, node in enumerate(self.graph.nodes):
            if node.op == "input":
                values[Ref(i)] = next(feed)
                continue
            operands = [values[r] for r in node.args]
            dests = []
            for k, t in enumerate(node.outputs):
                ref = Ref(i, k)
                if ref in self._buffers:
                    dests.append(self._buffers[ref])
                elif outputs is not None and ref in outputs:
                    dests.append(outputs[ref])
                elif node.op == "customized" or not get(node.op).has(Prop.VIEW):
                    dests.append(torch.empty(t.shape, dtype=torch_dtype(t.dtype),
                                             device=self.device))
                else:
                    dests.append(None)
            if node.op == "customized":
                self.launches[i](operands + dests)
                results = dests
            else:
                results = [get(node.op).torch_fn(dests[0], *operands, node.attr)]
            for k, t in enumerate(results):
                values[Ref(i, k)] = t
        return values

    def _allocate_intermediates(self) -> dict[Ref, object]:
        import torch

        outputs = set(self.graph.outputs)
        buffers = {}
        for i, node in enumerate(self.graph.nodes):
            if node.op == "input" or (node.op != "customized" and get(node.op).has(Prop.VIEW)):
                continue
            for k, t in enumerate(node.outputs):
                if Ref(i, k) not in outputs:
                    dtype = torch_dtype(self.storage[Ref(i, k)])
                    buffers[Ref(i, k)] = torch.empty(t.shape, dtype=dtype, device=self.device)
        return buffers

    # --- tuning ------------------------------------------------------------------------------

    def random_inputs(self, seed: int = 0) -> list:
        """Inputs of the right shapes and dtypes on this graph's device (normal, scaled 0.5)."""
        import torch

        gen = torch.Generator(device=self.device).manual_seed(seed)
        return [
            (0.5 * torch.randn(t.shape, generator=gen, device=self.device,
                               dtype=torch.float32)).to(torch_dtype(t.dtype))
            for t in self.input_types
        ]

    def _load_or_tune(self, tune: bool) -> None:
        path = self.cache_dir / "tuned.json"
        stored = cache.read_json(path)
        if all(spec.name in stored for spec in self.generated.kernels):
            for launch in self.launches.values():
                rec = stored[launch.spec.name]
                launch.config = Config(rec["num_warps"], rec["num_stages"])
            self.tuned = stored
            return
        if not tune or not self.launches:
            return
        values = self._execute(self.random_inputs(), None)
        operands = {
            i: [values[r] for r in self.graph.nodes[i].args]
            + [values[Ref(i, k)] for k in range(len(self.graph.nodes[i].outputs))]
            for i in self.launches
        }
        # The config the first run used (the default, or its one-stage fallback: ``Launch``)
        # is timed too, so at least one config is known to run.
        configs = {i: list(dict.fromkeys([*tuning.candidates(launch.spec), launch.config]))
                   for i, launch in self.launches.items()}
        work = []
        for i, launch in self.launches.items():
            for cfg in configs[i]:
                work.append(lambda launch=launch, cfg=cfg, t=operands[i]: launch.warmup(t, cfg))
        tuning.precompile(work)
        for i, launch in self.launches.items():
            best, timings = tuning.pick(lambda cfg, launch=launch, t=operands[i]: launch(t, cfg),
                                        configs[i])
            launch.config = best
            self.tuned[launch.spec.name] = {**best.as_dict(), "timings_us": timings}
        cache.write_json(path, self.tuned)


def compile(graph: KernelGraph, *, mode: str | None = None, device=None, tune: bool = True,
            cache_dir: str | Path | None = None) -> CompiledGraph:
    """Compile ``graph`` into a callable on torch tensors.

    ``mode``: ``"gpu"`` (default when CUDA is available) launches JIT-compiled Triton kernels;
    ``"interpret"`` runs them in Triton's CPU interpreter on CPU tensors (tests).
    ``tune``: on the GPU, time each kernel's launch configs once and cache the winner (keyed by
    the graph's hash, the Triton version and the GPU); otherwise a heuristic config is used.
    """
    import torch

    if mode is None:
        mode = "gpu" if torch.cuda.is_available() else "interpret"
    if mode == "gpu":
        if not torch.cuda.is_available():
            raise RuntimeError("mode='gpu' needs CUDA; use mode='interpret' on a CPU machine")
        device = torch.device(device if device is not None else "cuda")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    elif mode == "interpret":
        device = torch.device("cpu")
    else:
        raise ValueError(f"mode must be 'gpu' or 'interpret', got {mode!r}")
    validate(graph, TARGETS["h100"])
    root = Path(cache_dir) if cache_dir is not None else None
    return CompiledGraph(graph, mode, device, root, tune)
