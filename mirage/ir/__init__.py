"""The µGraph IR: frozen graphs, type inference, validity rules, JSON format, targets."""

from mirage.ir.check import check, shared_memory_bytes, validate
from mirage.ir.graph import (
    DTYPE_BYTES,
    BlockGraph,
    BlockNode,
    KernelGraph,
    KernelNode,
    Ref,
    TensorType,
)
from mirage.ir.infer import IRError, Rule
from mirage.ir.serialize import MugraphFile, MugraphFormatError, load, loads, save
from mirage.ir.target import A100, DEFAULT_TARGET, H100, TARGETS, Target, default_target

__all__ = [
    "A100",
    "DEFAULT_TARGET",
    "DTYPE_BYTES",
    "H100",
    "TARGETS",
    "BlockGraph",
    "BlockNode",
    "IRError",
    "KernelGraph",
    "KernelNode",
    "MugraphFile",
    "MugraphFormatError",
    "Ref",
    "Rule",
    "Target",
    "TensorType",
    "check",
    "default_target",
    "load",
    "loads",
    "save",
    "shared_memory_bytes",
    "validate",
]
