"""The on-disk cache of compiled µGraphs: generated source and tuned launch configs.

An entry is keyed by the µGraph's structural hash, a fingerprint of the source that generates the
code (``mirage.fingerprint``: the op rows' emitters, the IR and the code generator, so an edit to
any of them is a new entry, never a stale kernel), the Triton version and the GPU (name and
compute capability; ``interpreter`` on the CPU), so a cached answer never outlives what it
depends on (STYLE point 7). Each entry directory holds

* ``kernels_<digest>.py`` — the generated Triton module (imported from there, so tracebacks and
  Triton's own binary cache point at real source);
* ``tuned.json`` — the winning ``num_warps`` / ``num_stages`` per kernel with the timings seen;
* ``meta.json`` — what the key was made of, for people.

Triton caches the compiled binaries of that source itself (keyed by the source, options,
target and its version), so a warm entry starts without compiling or tuning.
The root is ``$MIRAGE_CACHE_DIR``, else ``~/.cache/mirage``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from mirage.codegen import CODEGEN_VERSION
from mirage.fingerprint import source_fingerprint


def cache_root() -> Path:
    return Path(os.environ.get("MIRAGE_CACHE_DIR") or Path.home() / ".cache" / "mirage")


def triton_version() -> str:
    import triton

    return triton.__version__


def gpu_id(device=None) -> str:
    """``<name>-sm<major><minor>`` of a CUDA device, or ``interpreter``."""
    if device is None or getattr(device, "type", "cpu") != "cuda":
        return "interpreter"
    import torch

    props = torch.cuda.get_device_properties(device)
    return f"{props.name.replace(' ', '_')}-sm{props.major}{props.minor}"


# The packages whose source decides a generated kernel: emitters live in the op rows.
GENERATING = ("ops", "ir", "codegen")


def entry_dir(digest: str, gpu: str, root: Path | None = None) -> Path:
    code = source_fingerprint(*GENERATING)
    key = "|".join((digest, CODEGEN_VERSION, code, triton_version(), gpu))
    h = hashlib.sha256(key.encode()).hexdigest()[:24]
    d = (root or cache_root()) / h
    d.mkdir(parents=True, exist_ok=True)
    meta = d / "meta.json"
    if not meta.exists():
        write_json(meta, {"digest": digest, "codegen": CODEGEN_VERSION, "code": code,
                          "triton": triton_version(), "gpu": gpu})
    return d


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # a missing or torn file is a cache miss, never an error


def write_json(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)
