"""GPU targets: the per-block limits that validity and search respect."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """A GPU's limits. ``smem_per_block`` is the opt-in maximum of shared memory per block."""

    name: str
    smem_per_block: int
    num_sms: int
    compute_capability: tuple[int, int]


H100 = Target("h100", smem_per_block=227 * 1024, num_sms=132, compute_capability=(9, 0))
A100 = Target("a100", smem_per_block=163 * 1024, num_sms=108, compute_capability=(8, 0))
TARGETS = {t.name: t for t in (H100, A100)}
# Kept importable for older callers only: the library's defaults are ``default_target()``,
# resolved at each call (an entry point given no target reads it then, not at import).
DEFAULT_TARGET = A100


def default_target() -> Target:
    """The target every entry point uses when none is named: ``MIRAGE_TARGET`` if set, else the
    GPU present (read through NVML when it is installed), else the H100."""
    import os

    name = os.environ.get("MIRAGE_TARGET", "").strip().lower()
    if name:
        if name not in TARGETS:
            from mirage.errors import InputError

            raise InputError(f"MIRAGE_TARGET={name!r}: not a known target "
                             f"(one of {', '.join(sorted(TARGETS))})")
        return TARGETS[name]
    return _detected_target() or H100


def _detected_target() -> Target | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            if pynvml.nvmlDeviceGetCount() < 1:
                return None
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
        finally:
            pynvml.nvmlShutdown()
    except pynvml.NVMLError:
        return None
    name = name.decode() if isinstance(name, bytes) else str(name)
    for key, target in (("A100", A100), ("H100", H100), ("H200", H100)):
        if key in name.upper():
            return target
    return None


def resolve_target(target: Target | str | None) -> Target:
    """What every entry point does with its ``target`` argument: ``None`` is
    ``default_target()`` (resolved now, not at import), a ``Target`` is itself, a known name
    (``"h100"``, any case) is its target; anything else is an ``InputError``."""
    if target is None:
        return default_target()
    if isinstance(target, Target):
        return target
    if isinstance(target, str) and target.strip().lower() in TARGETS:
        return TARGETS[target.strip().lower()]
    from mirage.errors import InputError

    raise InputError(f"target: expected a Target or one of {', '.join(sorted(TARGETS))}, "
                     f"got {target!r:.40}")
