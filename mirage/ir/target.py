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
# The stricter of the two: graphs valid here run on both cards.
DEFAULT_TARGET = A100
