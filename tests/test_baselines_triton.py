"""The hand-written Triton baselines without a GPU: every kernel and tile config compiles ahead
of time for sm_90 (and the first config for sm_80), and every kernel computes the program in the
Triton interpreter at small shapes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from baselines import triton_kernels
from scripts.harness.cases import CASES

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("case", list(triton_kernels.KERNELS))
def test_aot_compiles_for_sm90(case):
    shapes = CASES[case].shapes(16)  # the largest row tiles the runs use
    compiled = triton_kernels.aot_compile(case, shapes, arch=90)
    assert len(compiled) == len(triton_kernels.KERNELS[case].configs(shapes))
    for kernel in compiled:
        assert kernel.asm["cubin"] and ".target sm_90" in kernel.asm["ptx"]


def test_aot_compiles_for_sm80():
    for case, use in triton_kernels.KERNELS.items():
        shapes = CASES[case].shapes(8)
        # Only the first config: the sm_90 test covers the rest.
        (kernel,) = triton_kernels.aot_compile(case, shapes, arch=80,
                                               configs=use.configs(shapes)[:1])
        assert ".target sm_80" in kernel.asm["ptx"]


# Small shapes for the interpreter; each kernel runs every one of its tile configs.
INTERPRETER_SCRIPT = r"""
import json, sys
from baselines import triton_kernels as tk
from scripts.harness.cases import CASES, reference, relative_error
small = {
    "gqa": {"Q": (2, 32, 64), "K": (2, 128, 64), "V": (2, 128, 64)},
    "qknorm": {"Q": (2, 32, 64), "K": (2, 128, 64), "V": (2, 128, 64)},
    "rmsnorm": {"X": (4, 256), "W": (256, 96)},
    "lora": {"X": (3, 96), "W": (96, 160), "A": (96, 16), "B": (16, 160)},
    "gatedmlp": {"X": (3, 128), "W1": (128, 96), "W2": (128, 96)},
    "ntrans": {"H": (3, 200), "X": (3, 200), "alpha": (3, 200)},
}
errors = {}
for name, shapes in small.items():
    case = CASES[name]
    x = case.inputs(shapes, seed=3)
    ref = reference(case, x)
    for i, cfg in enumerate(tk.KERNELS[name].configs(shapes)):
        errors[f"{name}/{i}"] = relative_error(tk.LAUNCHERS[name](*x, config=cfg), ref)
print(json.dumps(errors))
"""


def test_kernels_in_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", INTERPRETER_SCRIPT], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    errors = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {k.split("/")[0] for k in errors} == set(triton_kernels.KERNELS)
    bad = {k: e for k, e in errors.items() if not e <= CASES[k.split("/")[0]].tolerance}
    assert not bad, bad
