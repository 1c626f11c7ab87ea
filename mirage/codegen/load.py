"""Turn generated source into Triton kernel objects, for the GPU, the interpreter or AOT compile.

``TRITON_INTERPRET`` is read when ``@triton.jit`` runs, so a module imported under one setting
yields kernels of that kind only. Here the mode is decided per call instead: the module is
imported once (under whatever the environment says), and each kernel's plain Python function is
wrapped explicitly in a ``JITFunction`` (GPU, ahead-of-time compile) or an
``InterpretedFunction`` (CPU interpreter).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from mirage.codegen.triton_gen import GeneratedModule, KernelSpec, stride_name

MODES = ("gpu", "interpret")


def write_source(module: GeneratedModule, directory: Path) -> Path:
    """Write the module's source to ``directory`` (atomically; unchanged files are kept)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"kernels_{module.digest[:16]}.py"
    if path.exists() and path.read_text() == module.source:
        return path
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(module.source)
    os.replace(tmp, path)
    return path


def import_source(path: Path) -> ModuleType:
    """Import a generated module from ``path`` under a name unique to its content."""
    text = path.read_bytes()
    name = "mirage_generated_" + hashlib.sha256(text).hexdigest()[:16]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # Triton's JIT looks functions up through their module
    spec.loader.exec_module(mod)
    return mod


def kernel_object(mod: ModuleType, spec: KernelSpec, mode: str):
    """The kernel ``spec.name`` of ``mod`` as a JITFunction (``gpu``) or InterpretedFunction."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    decorated = getattr(mod, spec.name)
    fn = getattr(decorated, "fn", decorated)  # the undecorated Python function
    if mode == "interpret":
        return _Interpreted(fn)
    from triton.runtime.jit import JITFunction

    return JITFunction(fn)


class _Interpreted:
    """An ``InterpretedFunction`` that also runs when triton was imported without
    ``TRITON_INTERPRET=1``.

    Triton's own helpers (``tl.zeros``, ``tl.sum``, ``tl.sigmoid`` ...) are ``@jit`` functions
    created when ``triton.language`` is imported; without the variable they are JITFunctions,
    which refuse to be called from Python. For the duration of a launch they are made callable
    the way the interpreter calls them when the variable is set.
    """

    def __init__(self, fn):
        from triton.runtime.interpreter import InterpretedFunction

        self.fn = fn
        self.kernel = InterpretedFunction(fn)

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            with _interpretable_helpers():
                return self.kernel[grid](*args, **kwargs)

        return launch

    def warmup(self, *args, **kwargs):
        return None


@contextlib.contextmanager
def _interpretable_helpers():
    from triton.runtime.interpreter import InterpretedFunction, _patch_lang
    from triton.runtime.jit import JITFunction

    def call(self, *args, **kwargs):
        # InterpretedFunction.__call__ would leave triton.language patched for the interpreter
        # (harmless when the whole process interprets, fatal for a later AOT compile): patch
        # for the duration of the call only.
        scope = _patch_lang(self.fn)
        try:
            return InterpretedFunction(self.fn).rewrite()(*args, **kwargs)
        finally:
            scope.restore()

    original = JITFunction.__call__
    JITFunction.__call__ = call
    try:
        yield
    finally:
        JITFunction.__call__ = original


def signature(spec: KernelSpec, strides: list[int] | None = None) -> tuple[dict, dict, dict]:
    """Triton's (signature, constexprs, attrs) of a kernel.

    With ``strides`` (every stride, in parameter order) the kernel is specialized the way the
    JIT specializes a launch: a stride of 1 becomes the constant 1, a stride divisible by 16 and
    every (16-byte aligned) pointer carry ``tt.divisibility`` — what makes loads vectorize.
    """
    sig: dict[str, str] = {}
    constexprs: dict[str, int] = {}
    attrs: dict[tuple[int], list] = {}
    divisible = [["tt.divisibility", 16]]
    for param, dtype in zip(spec.params, spec.dtypes, strict=True):
        sig[f"{param}_ptr"] = "*" + dtype  # Triton spells fp16 / bf16 / fp32 as we do
        if strides is not None:
            attrs[(len(sig) - 1,)] = divisible
    names = [stride_name(p, d) for p, r in zip(spec.params, spec.ranks, strict=True)
             for d in range(r)]
    for k, name in enumerate(names):
        value = None if strides is None else strides[k]
        if value == 1:
            sig[name] = "constexpr"
            constexprs[name] = 1
        else:
            sig[name] = "i32"
            if value is not None and value % 16 == 0:
                attrs[(len(sig) - 1,)] = divisible
    for name, value in spec.constexprs:
        sig[name] = "constexpr"
        constexprs[name] = value
    return sig, constexprs, attrs


def aot_compile(mod: ModuleType, spec: KernelSpec, capability: int, num_warps: int = 4,
                num_stages: int = 3, strides: list[int] | None = None):
    """Compile one kernel ahead of time for ``sm_<capability>`` (no GPU needed).

    Catches what the interpreter accepts and the GPU compiler rejects (layouts, dot shapes,
    unsupported dtypes). ``strides`` specializes as a GPU launch would (see ``signature``).
    Returns Triton's CompiledKernel (``asm`` holds ttgir, ptx and cubin).
    """
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = kernel_object(mod, spec, "gpu")
    sig, constexprs, attrs = signature(spec, strides)
    src = ASTSource(fn=fn, signature=sig, constexprs=constexprs, attrs=attrs)
    target = GPUTarget("cuda", capability, 32)
    return triton.compile(src, target=target,
                          options={"num_warps": num_warps, "num_stages": num_stages})
