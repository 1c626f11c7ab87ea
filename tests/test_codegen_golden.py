"""Golden files of the generated Triton source (STYLE point 9): a refactor of the code generator
shows up here as a diff to read, not as a silent change in every kernel.

Regenerate after an intended change with
``MIRAGE_UPDATE_GOLDEN=1 pytest tests/test_codegen_golden.py`` and review the diff.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from mirage.codegen import generate
from mirage.workloads import REFERENCES, SHAPES

GOLDEN = Path(__file__).parent / "golden"
# Tile parameters spelled out, so that retuning a builder's defaults does not move the golden.
CASES = {
    "rmsnorm_b1": ("rmsnorm", 1, dict(tile_n=32, tile_k=256)),
    "gqa_b1": ("gqa", 1, dict(kv_splits=16, row_splits=2, tile_kv=64, combine_rows=4)),
}


def normalized(source: str) -> str:
    """The source without the µGraph digest (it belongs to the IR's serializer, not codegen)."""
    return re.sub(r"from µGraph [0-9a-f]+", "from µGraph <digest>", source)


@pytest.mark.parametrize("golden", sorted(CASES))
def test_generated_source_matches_golden(golden):
    name, b, params = CASES[golden]
    graph = REFERENCES[name](SHAPES[name](b), "fp16", **params)
    source = normalized(generate(graph).source)
    path = GOLDEN / f"{golden}.py.txt"
    if os.environ.get("MIRAGE_UPDATE_GOLDEN") == "1":
        path.write_text(source)
    assert path.exists(), f"missing {path}: run with MIRAGE_UPDATE_GOLDEN=1"
    assert source == path.read_text(), f"generated source for {golden} changed; see {path}"


def test_golden_sources_read_like_the_tutorials():
    """The conventions the golden files pin down, stated once."""
    source = (GOLDEN / "rmsnorm_b1.py.txt").read_text()
    for needle in ("@triton.jit", "pid_x = tl.program_id(0)", "offs_", "_ptrs", "BLOCK_",
                   "tl.zeros(", "dtype=tl.float32", "for i in range(", "mask=", "# block.nodes["):
        assert needle in source, needle
    assert "make_block_ptr" not in source and "advance(" not in source  # gone in Triton 3.9
