"""What a run ran on: the GPU (through NVML), library versions, host CPU and code provenance.

``detect_gpu`` finds the CUDA device torch will use and names it (``gpu_slug``: "h100", "a100",
...). ``resolve_gpu`` compares that name with the one a user asked for (``GPU=a100``) and refuses a
mismatch unless forced, in which case the override is recorded. ``snapshot`` reads the NVML state
(clocks, power limit, temperature, throttle reasons) at one moment; a run stores one taken before
and one after measuring. NVML is optional: without it the snapshot says why.

``code_fingerprint`` hashes the contents of the files a measurement depends on, so the checker can
tell results measured with other code (stale) from current ones, committed or not, and on a copy
of the tree without git.
"""

from __future__ import annotations

import hashlib
import platform
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

# The code a measured number depends on (the checker calls results stale when these change).
MEASURED_CODE = ("mirage", "baselines", "saved_mugraphs", "scripts/harness/cases.py",
                 "scripts/harness/measure.py", "scripts/harness/mirage_side.py")

_VENDOR_WORDS = {"nvidia", "tesla", "geforce", "quadro"}


class NoGpu(Exception):
    """No usable CUDA GPU; the message says why."""


class GpuMismatch(Exception):
    """The GPU asked for is not the GPU in the machine."""


@dataclass(frozen=True)
class GpuInfo:
    """The device torch uses, as NVML (or, without NVML, torch) names it."""

    name: str
    slug: str
    uuid: str | None
    index: int  # torch's device index
    nvml_index: int | None
    compute_capability: tuple[int, int]
    l2_bytes: int
    nvml_error: str | None = None


def gpu_slug(name: str) -> str:
    """A short lowercase card name for paths: "NVIDIA H100 80GB HBM3" -> "h100",
    "NVIDIA A100-SXM4-80GB" -> "a100", "NVIDIA GeForce RTX 4090" -> "rtx4090"."""
    words = [w for w in re.split(r"[\s\-_]+", name.strip()) if w]
    words = [w for w in words if w.lower() not in _VENDOR_WORDS]
    if not words:
        return "unknown"
    first = words[0].lower()
    if first in {"rtx", "gtx"} and len(words) > 1:
        first += words[1].lower()
    return re.sub(r"[^a-z0-9]+", "", first) or "unknown"


def resolve_gpu(requested: str | None, info: GpuInfo, force: bool) -> tuple[str, dict | None]:
    """The name results are filed under, and the override to record (None if none).

    ``requested`` None takes the detected card; a different card is an error unless ``force``.
    """
    if not requested or requested.lower() == info.slug:
        return info.slug, None
    requested = requested.lower()
    if not force:
        raise GpuMismatch(
            f"GPU={requested} but this machine's GPU is {info.name} ({info.slug}); use "
            f"GPU={info.slug}, or FORCE_GPU=1 (--force-gpu) to file results under {requested} "
            "anyway (the override is recorded)")
    return requested, {"requested": requested, "reported": info.slug, "reported_name": info.name}


def _nvml():
    import pynvml

    pynvml.nvmlInit()
    return pynvml


def detect_gpu(nvml_module=None) -> GpuInfo:
    """The CUDA device torch uses (device 0), matched to its NVML handle by UUID."""
    try:
        import torch
    except Exception as e:
        raise NoGpu(f"torch not importable ({e})") from None
    if not torch.cuda.is_available():
        reason = "torch.cuda.is_available() is False"
        try:
            (nvml_module or _nvml())
        except Exception as e:
            reason += f"; NVML: {_first_line(e)}"
        raise NoGpu(reason)
    props = torch.cuda.get_device_properties(0)
    uuid = _torch_uuid(props)
    name, nvml_index, nvml_error = props.name, None, None
    try:
        nv = nvml_module or _nvml()
        nvml_index = _nvml_index(nv, uuid)
        handle = nv.nvmlDeviceGetHandleByIndex(nvml_index)
        name = _str(nv.nvmlDeviceGetName(handle))
        uuid = _str(nv.nvmlDeviceGetUUID(handle))
    except Exception as e:
        nvml_error = _first_line(e)
    return GpuInfo(name, gpu_slug(name), uuid, 0, nvml_index, (props.major, props.minor),
                   int(getattr(props, "L2_cache_size", 50 * 2**20)), nvml_error)


def _torch_uuid(props) -> str | None:
    uuid = getattr(props, "uuid", None)
    if uuid is None:
        return None
    text = str(uuid)
    return text if text.startswith("GPU-") else f"GPU-{text}"


def _nvml_index(nv, uuid: str | None) -> int:
    """NVML's index of the card with ``uuid`` (NVML ignores CUDA_VISIBLE_DEVICES)."""
    if uuid:
        for i in range(nv.nvmlDeviceGetCount()):
            if _str(nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetHandleByIndex(i))) == uuid:
                return i
    return 0


def _str(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


_THROTTLE_REASONS = {
    "gpu_idle": 0x1, "applications_clocks_setting": 0x2, "sw_power_cap": 0x4,
    "hw_slowdown": 0x8, "sync_boost": 0x10, "sw_thermal_slowdown": 0x20,
    "hw_thermal_slowdown": 0x40, "hw_power_brake_slowdown": 0x80,
    "display_clock_setting": 0x100,
}


def throttle_names(mask: int) -> list[str]:
    return [name for name, bit in _THROTTLE_REASONS.items() if mask & bit]


def snapshot(info: GpuInfo, nvml_module=None) -> dict:
    """NVML's view of the card now: clocks, power, temperature, throttle reasons."""
    if info.nvml_index is None:
        return {"nvml": f"not available: {info.nvml_error or 'no NVML handle'}"}
    try:
        nv = nvml_module or _nvml()
        h = nv.nvmlDeviceGetHandleByIndex(info.nvml_index)
        clocks = {}
        for label, kind in (("sm", nv.NVML_CLOCK_SM), ("mem", nv.NVML_CLOCK_MEM)):
            clocks[f"{label}_mhz"] = nv.nvmlDeviceGetClockInfo(h, kind)
            clocks[f"{label}_max_mhz"] = nv.nvmlDeviceGetMaxClockInfo(h, kind)
        mask = nv.nvmlDeviceGetCurrentClocksThrottleReasons(h)
        return {
            "clocks": clocks,
            "power_limit_w": nv.nvmlDeviceGetPowerManagementLimit(h) / 1000,
            "power_draw_w": nv.nvmlDeviceGetPowerUsage(h) / 1000,
            "temperature_c": nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU),
            "throttle_reasons": throttle_names(mask),
            "throttle_mask": mask,
        }
    except Exception as e:
        return {"nvml": f"error: {_first_line(e)}"}


def static_info(info: GpuInfo, nvml_module=None, code_paths=MEASURED_CODE) -> dict:
    """What does not change during a run: card, driver, library versions, host, code."""
    gpu = {"name": info.name, "slug": info.slug, "uuid": info.uuid,
           "compute_capability": list(info.compute_capability), "l2_bytes": info.l2_bytes}
    if info.nvml_index is not None:
        try:
            nv = nvml_module or _nvml()
            h = nv.nvmlDeviceGetHandleByIndex(info.nvml_index)
            gpu["driver"] = _str(nv.nvmlSystemGetDriverVersion())
            gpu["cuda_driver"] = nv.nvmlSystemGetCudaDriverVersion()
            gpu["memory_bytes"] = nv.nvmlDeviceGetMemoryInfo(h).total
        except Exception as e:
            gpu["nvml"] = f"error: {_first_line(e)}"
    else:
        gpu["nvml"] = f"not available: {info.nvml_error}"
    return {"gpu": gpu, "software": software_versions(), "host": host_info(),
            "code": code_provenance(paths=code_paths)}


def software_versions() -> dict:
    import sys

    versions = {"python": sys.version.split()[0]}
    try:
        import torch

        versions.update(torch=torch.__version__, cuda=torch.version.cuda,
                        cudnn=torch.backends.cudnn.version())
    except Exception as e:
        versions["torch"] = f"not importable: {e}"
    for module in ("triton", "numpy", "flashinfer", "flash_attn", "torch_tensorrt", "tensorrt"):
        try:
            versions[module] = __import__(module).__version__
        except Exception:
            versions[module] = None
    return versions


def host_info() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "machine": platform.machine(), "system": platform.platform()}


def _git(*args: str, cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.rstrip("\n") if out.returncode == 0 else None


def _code_files(root: Path, paths) -> list[str]:
    """Files under ``paths``, minus hidden ones and Python caches. A walk, not ``git ls-files``,
    so a copy of the tree without ``.git`` (the GPU machine) fingerprints the same."""
    files = []
    for top in paths:
        base = root / top
        for p in [base] if base.is_file() else sorted(base.rglob("*")):
            rel = p.relative_to(root)
            if (p.is_file() and p.suffix not in (".pyc", ".pyo")
                    and not any(part.startswith(".") or part == "__pycache__"
                                for part in rel.parts)):
                files.append(rel.as_posix())
    return sorted(set(files))


def code_fingerprint(root: Path = Path("."), paths=MEASURED_CODE) -> str:
    """sha256 over (path, content) of the files a measurement depends on."""
    root = Path(root)
    h = hashlib.sha256()
    for name in _code_files(root, paths):
        h.update(name.encode() + b"\0" + hashlib.sha256((root / name).read_bytes()).digest())
    return h.hexdigest()


def code_provenance(root: Path = Path("."), paths=MEASURED_CODE) -> dict:
    commit = _git("rev-parse", "HEAD", cwd=root)
    dirty = _git("status", "--porcelain", "--", *paths, cwd=root)
    return {"commit": commit or "unknown",
            "dirty_paths": dirty.splitlines() if dirty else [],
            "fingerprint": code_fingerprint(root, paths),
            "fingerprint_paths": list(paths)}
