"""The entry points' guards: GPU naming, a GPU other than the one asked for, no GPU at all, and
the NVML metadata (with a fake NVML and a fake CUDA device)."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from scripts import fig7, verify
from scripts.harness import metadata
from scripts.harness.metadata import GpuInfo, GpuMismatch, NoGpu

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name, slug", [
    ("NVIDIA H100 80GB HBM3", "h100"), ("NVIDIA H100 PCIe", "h100"),
    ("NVIDIA A100-SXM4-80GB", "a100"), ("NVIDIA A100 80GB PCIe", "a100"),
    ("NVIDIA H200", "h200"), ("NVIDIA GeForce RTX 4090", "rtx4090"), ("Tesla V100-SXM2-16GB",
                                                                      "v100"),
    ("", "unknown"),
])
def test_gpu_slug(name, slug):
    assert metadata.gpu_slug(name) == slug


H100 = GpuInfo("NVIDIA H100 80GB HBM3", "h100", "GPU-1234", 0, 0, (9, 0), 50 * 2**20)


def test_resolve_gpu():
    assert metadata.resolve_gpu(None, H100, False) == ("h100", None)
    assert metadata.resolve_gpu("H100", H100, False) == ("h100", None)
    with pytest.raises(GpuMismatch, match="GPU=a100 but this machine's GPU is NVIDIA H100"):
        metadata.resolve_gpu("a100", H100, False)
    name, override = metadata.resolve_gpu("a100", H100, True)
    assert name == "a100" and override == {"requested": "a100", "reported": "h100",
                                           "reported_name": H100.name}


def test_fig7_refuses_another_gpu_cleanly(capsys):
    code = fig7.main(["--gpu", "a100"], detect=lambda: H100,
                     timer_loader=lambda n: pytest.fail("must stop before timing"))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "FORCE_GPU=1" in err
    assert "Traceback" not in err


def test_fig7_without_gpu_says_so(capsys):
    def no_gpu():
        raise NoGpu("torch.cuda.is_available() is False")

    assert fig7.main(["--gpu", "h100"], detect=no_gpu) == 3
    err = capsys.readouterr().err
    assert err.startswith("fig7: no CUDA GPU visible") and err.count("\n") == 1


def test_fig7_without_timer_says_so(capsys):
    def broken(n):
        raise ImportError("No module named 'mirage.profile'")

    assert fig7.main([], detect=lambda: H100, timer_loader=broken) == 4
    assert "cannot time" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
@pytest.mark.parametrize("module, args", [("scripts.fig7", ["--gpu", "h100", "--batches",
                                                             "1,8,16"])])
def test_no_gpu_entry_point_exits_nonzero_without_traceback(module, args, tmp_path):
    proc = subprocess.run([sys.executable, "-m", module, *args, "--results", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fig7: no CUDA GPU visible")
    assert not any(tmp_path.iterdir())  # nothing written


def test_verify_without_results_exits_nonzero(tmp_path, capsys):
    assert verify.main(["--results", str(tmp_path / "none")]) == 2  # bad input (issue 15)
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no results" in err and err.count("\n") == 1


# --- metadata through a fake NVML and a fake CUDA device ------------------------------------------


class FakeNvml(types.SimpleNamespace):
    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0
    UUIDS = ["GPU-other", "GPU-1234"]  # torch's device 0 is NVML's device 1

    def nvmlDeviceGetCount(self):
        return len(self.UUIDS)

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetUUID(self, h):
        return self.UUIDS[h].encode()

    def nvmlDeviceGetName(self, h):
        return ["NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3"][h]

    def nvmlDeviceGetClockInfo(self, h, kind):
        return {1: 1755, 2: 2619}[kind]

    def nvmlDeviceGetMaxClockInfo(self, h, kind):
        return {1: 1980, 2: 2619}[kind]

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h):
        return 0x4 | 0x20

    def nvmlDeviceGetPowerManagementLimit(self, h):
        return 700_000

    def nvmlDeviceGetPowerUsage(self, h):
        return 123_000

    def nvmlDeviceGetTemperature(self, h, sensor):
        return 41

    def nvmlSystemGetDriverVersion(self):
        return "580.65.06"

    def nvmlSystemGetCudaDriverVersion(self):
        return 13000

    def nvmlDeviceGetMemoryInfo(self, h):
        return types.SimpleNamespace(total=80 * 2**30)


def fake_cuda(monkeypatch):
    props = types.SimpleNamespace(name="torch name", uuid="1234", major=9, minor=0,
                                  L2_cache_size=50 * 2**20)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)


def test_detect_gpu_matches_nvml_by_uuid(monkeypatch):
    fake_cuda(monkeypatch)
    info = metadata.detect_gpu(FakeNvml())
    assert (info.name, info.slug, info.uuid, info.nvml_index) == (
        "NVIDIA H100 80GB HBM3", "h100", "GPU-1234", 1)


def test_detect_gpu_without_nvml_falls_back_to_torch(monkeypatch):
    fake_cuda(monkeypatch)

    class Broken:
        def nvmlDeviceGetCount(self):
            raise RuntimeError("NVML Shared Library Not Found")

    info = metadata.detect_gpu(Broken())
    assert info.name == "torch name" and info.nvml_index is None and "NVML" in info.nvml_error
    assert metadata.snapshot(info)["nvml"].startswith("not available")


def test_snapshot_and_static_info_from_fake_nvml(monkeypatch):
    fake_cuda(monkeypatch)
    nv = FakeNvml()
    info = metadata.detect_gpu(nv)
    snap = metadata.snapshot(info, nv)
    assert snap["clocks"] == {"sm_mhz": 1755, "sm_max_mhz": 1980, "mem_mhz": 2619,
                              "mem_max_mhz": 2619}
    assert snap["power_limit_w"] == 700 and snap["temperature_c"] == 41
    assert snap["throttle_reasons"] == ["sw_power_cap", "sw_thermal_slowdown"]
    static = metadata.static_info(info, nv)
    assert static["gpu"]["driver"] == "580.65.06" and static["gpu"]["uuid"] == "GPU-1234"
    assert static["software"]["torch"] == torch.__version__
    assert static["code"]["commit"] and len(static["code"]["fingerprint"]) == 64
    assert static["host"]["cpu"] is not None


def test_fingerprint_follows_content(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.py").write_text("1")
    before = metadata.code_fingerprint(tmp_path, ("a",))
    assert metadata.code_fingerprint(tmp_path, ("a",)) == before
    (tmp_path / "a" / "x.py").write_text("2")
    assert metadata.code_fingerprint(tmp_path, ("a",)) != before
