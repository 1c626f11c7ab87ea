"""PyTorch in front of Mirage: ``torch.compile(model, backend="mirage")`` or ``optimize``.

    import mirage.torch  # registers the "mirage" backend
    compiled = torch.compile(model, backend="mirage", dynamic=False,
                             options={"time_budget_s": 60, "cache_dir": "/tmp/mirage"})
    with torch.no_grad():
        y = compiled(x)
    print(mirage.torch.explain())          # what the named backend did, as a table

    opt = mirage.torch.optimize(model, (x,), time_budget_s=60)
    y = opt(x)
    print(opt.mirage_report); opt.mirage_report.to_json()

The FX graph dynamo captures is cut into maximal subgraphs the kernel-graph builder can express;
each is superoptimized and, on a GPU, kept only where faster than Inductor's code for it
(``mirage.torch.backend`` says how the choice is made). Inference only: a graph that needs
autograd runs without Mirage, and the report says so. Shapes are static: a new input shape is a
new compile (``dynamic=False``).
"""

from __future__ import annotations

import torch

from mirage.torch.backend import Backend, Options, compile_graph, input_key
from mirage.torch.report import CompileReport, Report, SubgraphReport

__all__ = ["Backend", "CompileReport", "Optimized", "Options", "Report", "SubgraphReport",
           "compile_graph", "explain", "input_key", "optimize", "reset"]

_NAMED = Backend()  # the state of the registered "mirage" backend


def mirage_backend(gm, example_inputs, options: dict | None = None, mode: str | None = None):
    """The ``"mirage"`` backend: ``options=`` of ``torch.compile`` are ``Options`` fields;
    ``mode=`` (an Inductor notion) is accepted and ignored."""
    return _NAMED(gm, example_inputs, options)


def _register() -> None:
    from torch._dynamo.backends.registry import list_backends, register_backend

    if "mirage" not in list_backends(exclude_tags=()):
        register_backend(compiler_fn=mirage_backend, name="mirage")


_register()


class Optimized:
    """``fn`` compiled for Mirage, one compile per input key (shapes and dtypes): a call with a
    new key compiles again (dynamo guards on shapes with ``dynamic=False``) and ``programs``
    holds each key's compiled graph. Calls run under ``torch.no_grad()``."""

    def __init__(self, fn, example_inputs, **options):
        self.backend = Backend(**options)
        self.fn = fn
        self._compiled = torch.compile(fn, backend=self.backend, dynamic=False)
        self(*example_inputs)

    def __call__(self, *args, **kwargs):
        with torch.no_grad():
            return self._compiled(*args, **kwargs)

    @property
    def programs(self) -> dict:
        return self.backend.programs

    @property
    def mirage_report(self) -> Report:
        return self.backend.report


def optimize(fn, example_inputs, **options) -> Optimized:
    """Compile ``fn`` (a function or ``nn.Module``) for ``example_inputs`` now; ``options`` are
    ``Options`` fields (search limits, ``cache_dir``, ``fallback``)."""
    if not isinstance(example_inputs, (tuple, list)):
        example_inputs = (example_inputs,)
    return Optimized(fn, tuple(example_inputs), **options)


def explain(obj=None) -> Report:
    """The report of ``obj`` (an ``optimize`` result or a ``Backend``), or with no argument
    that of the named ``"mirage"`` backend (every compile since ``reset``)."""
    if obj is None:
        return _NAMED.report
    for attr in ("mirage_report", "report"):
        if isinstance(getattr(obj, attr, None), Report):
            return getattr(obj, attr)
    raise TypeError(f"explain: no mirage report on {type(obj).__name__}")


def reset() -> None:
    """Forget the named backend's reports (dynamo's caches are ``torch._dynamo.reset()``)."""
    _NAMED.report.compiles.clear()
    _NAMED.programs.clear()
