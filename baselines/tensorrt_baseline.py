"""TensorRT through Torch-TensorRT, used when ``torch_tensorrt`` is importable (the Docker image).

The eager definition is compiled ahead of time for the case's exact shapes and fp16 inputs. Only
the Torch-TensorRT path is implemented: with bare ``tensorrt`` and no ``torch_tensorrt`` the
baseline says so instead of building an ONNX pipeline.
"""

from __future__ import annotations

import importlib
import importlib.util

import torch

from baselines import ALL_CASES, Baseline, NotAvailable, require_cuda
from baselines.eager import DEFINITIONS


class _Program(torch.nn.Module):
    def __init__(self, case: str):
        super().__init__()
        self.fn = DEFINITIONS[case]

    def forward(self, *inputs):
        return self.fn(*inputs)


def build(case: str, shapes: dict, device):
    require_cuda(device)
    try:
        torch_tensorrt = importlib.import_module("torch_tensorrt")
    except Exception as e:
        have_trt = importlib.util.find_spec("tensorrt") is not None
        extra = " (tensorrt is installed, but only the Torch-TensorRT path is implemented)"
        raise NotAvailable(f"torch_tensorrt not importable ({type(e).__name__}: {e})"
                           + (extra if have_trt else "")) from None
    example = [torch.randn(s, dtype=torch.float16, device=device) for s in shapes.values()]
    module = _Program(case).eval()
    return torch_tensorrt.compile(module, ir="dynamo", arg_inputs=example, min_block_size=1,
                                  enabled_precisions={torch.float16})


BASELINES = (Baseline("tensorrt", "tensorrt", ALL_CASES, build,
                      "torch_tensorrt.compile(ir='dynamo'), fp16, static shapes"),)
