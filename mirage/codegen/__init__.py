"""Lower µGraphs to Triton: one kernel per graph-defined op (see ``triton_gen``)."""

from mirage.codegen.triton_gen import (
    CODEGEN_VERSION,
    GeneratedModule,
    KernelSpec,
    emit_kernel,
    generate,
)

__all__ = ["CODEGEN_VERSION", "GeneratedModule", "KernelSpec", "emit_kernel", "generate"]
