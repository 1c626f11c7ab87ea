"""torch.compile (Inductor) of the eager definitions.

Mode ``max-autotune-no-cudagraphs``: Inductor tunes its kernels but does not wrap them in its own
CUDA graphs, so the harness captures every implementation in a CUDA graph the same way.
Compilation and autotuning happen on the first call (the harness's correctness check), outside
the timed region.
"""

from __future__ import annotations

import torch

from baselines import ALL_CASES, Baseline, require_cuda
from baselines.eager import DEFINITIONS

DEFAULT_MODE = "max-autotune-no-cudagraphs"
MODES = (DEFAULT_MODE, "default")  # "default": much faster to compile, no autotuning
mode = DEFAULT_MODE  # the run's mode: ``scripts.fig7 --compile-mode`` sets it


def build(case: str, shapes: dict, device):
    require_cuda(device)
    # A fresh Dynamo cache per case: the same eager function at three batch sizes would
    # otherwise count towards the recompile limit.
    torch._dynamo.reset()
    fn = torch.compile(DEFINITIONS[case], mode=mode, fullgraph=True, dynamic=False)
    return fn, {"compile_mode": mode}  # recorded with the measurement


BASELINES = (Baseline("torch.compile", "pytorch", ALL_CASES, build,
                      "Inductor, fullgraph, static shapes"),)
