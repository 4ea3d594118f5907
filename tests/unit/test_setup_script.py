"""`scripts/setup.sh --dry-run`: which PyTorch build the set-up installs on each platform, without installing it.

A Linux machine without an NVIDIA GPU must get the CPU build from PyTorch's CPU index (plain `pip install
torch` there pulls the multi-GB CUDA build), and fall back to the configured pip index when that index is
unreachable (as on the development machine); CUDA machines and macOS get the default wheel.
"""

from __future__ import annotations

import functools
import http.server
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

SETUP_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "setup.sh"
TORCH_VERSION = "2.13.0"


def _stub(path: Path) -> None:
    """An executable that fails: a set-up that ignored --dry-run stops at once instead of installing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\necho \"$0 must not run in a dry run\" >&2\nexit 3\n")
    path.chmod(0o755)


def dry_run(tmp_path: Path, *, platform: str | None, index: str, path_prefix: Path | None = None):
    for stub in (tmp_path / "venv" / "bin" / "python", tmp_path / "stubs" / "apt-get", tmp_path / "stubs" / "sudo"):
        _stub(stub)
    env = {k: v for k, v in os.environ.items() if k not in ("LATENTDIFF_PLATFORM", "TORCH_VERSION")}
    env.update(VENV=str(tmp_path / "venv"), TORCH_CPU_INDEX=index, PYTHON=sys.executable)
    if platform is not None:
        env["LATENTDIFF_PLATFORM"] = platform
    env["PATH"] = os.pathsep.join(filter(None, [str(path_prefix or ""), str(tmp_path / "stubs"), env["PATH"]]))
    return subprocess.run(["bash", str(SETUP_SCRIPT), "--dry-run"], env=env, capture_output=True, text=True,
                          timeout=60)


def pip_command(result: subprocess.CompletedProcess, tmp_path: Path) -> str:
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    prefix = f"{tmp_path / 'venv'}/bin/python -m pip install "
    assert lines["would run"].startswith(prefix), result.stdout
    return lines["would run"][len(prefix):]


@pytest.fixture(scope="module")
def reachable_index(tmp_path_factory):
    """A local stand-in for https://download.pytorch.org/whl/cpu: an HTTP server with a `torch/` page."""
    root = tmp_path_factory.mktemp("cpu_index")
    (root / "whl" / "cpu" / "torch").mkdir(parents=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/whl/cpu"
    server.shutdown()


@pytest.fixture
def unreachable_index():
    """A URL on a port where nothing listens (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/whl/cpu"


def test_no_nvidia_gpu_gets_the_cpu_build_from_pytorchs_cpu_index(tmp_path, reachable_index):
    result = dry_run(tmp_path, platform="linux-cpu", index=reachable_index)
    assert result.stdout.splitlines()[0] == "platform: linux-cpu"
    assert pip_command(result, tmp_path) == f"torch=={TORCH_VERSION} --index-url {reachable_index}"


def test_no_nvidia_gpu_falls_back_to_the_configured_index_when_pytorchs_is_unreachable(tmp_path, unreachable_index):
    result = dry_run(tmp_path, platform="linux-cpu", index=unreachable_index)
    assert pip_command(result, tmp_path) == f"torch=={TORCH_VERSION}"
    assert f"PyTorch's CPU index ({unreachable_index}) is unreachable" in result.stderr


@pytest.mark.parametrize("platform", ["linux-cuda", "macos"])
def test_nvidia_gpu_and_macos_get_the_default_wheel(tmp_path, reachable_index, platform):
    result = dry_run(tmp_path, platform=platform, index=reachable_index)
    assert result.stdout.splitlines()[0] == f"platform: {platform}"
    assert pip_command(result, tmp_path) == f"torch=={TORCH_VERSION}"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="NVIDIA detection is for Linux")
def test_an_nvidia_driver_on_the_path_is_detected_as_a_cuda_machine(tmp_path, reachable_index):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\nexit 0\n")  # detection only asks whether it exists
    (bin_dir / "nvidia-smi").chmod(0o755)
    result = dry_run(tmp_path, platform=None, index=reachable_index, path_prefix=bin_dir)
    assert result.stdout.splitlines()[0] == "platform: linux-cuda"
    assert "--index-url" not in pip_command(result, tmp_path)


def test_an_unknown_platform_is_one_sentence_and_exit_status_2(tmp_path, reachable_index):
    result = dry_run(tmp_path, platform="windows", index=reachable_index)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == ("setup.sh: unknown platform 'windows'; set LATENTDIFF_PLATFORM to linux-cpu, "
                                     "linux-cuda or macos.")
