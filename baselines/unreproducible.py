"""Baselines the paper compares against that cannot be reproduced today, with the reason.

They stay in the registry so every results table lists them as ``not available: <reason>``
instead of silently dropping them.
"""

from __future__ import annotations

from baselines import ALL_CASES, Baseline, NotAvailable

REASONS = {
    "taso": (
        "not reproducible: TASO (SOSP'19) is an unmaintained research prototype with no build for "
        "current CUDA/cuDNN or Hopper, and the upstream artifact reported TASO's own cost-model "
        "estimate rather than a measured time"
    ),
    "pet": (
        "not reproducible: PET (OSDI'21) is an unmaintained research prototype built on TASO, "
        "with no build for current CUDA/cuDNN or Hopper"
    ),
}


def _refuse(name: str):
    def build(case: str, shapes: dict, device):
        raise NotAvailable(REASONS[name])

    return build


BASELINES = tuple(Baseline(name, name, ALL_CASES, _refuse(name)) for name in REASONS)
