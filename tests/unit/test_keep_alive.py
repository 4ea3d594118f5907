"""`latentdiff generate`'s keep-alive worker: the next call is answered warm, with the same pixels, and
anything unusual falls back to generating in process."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from latentdiff import keep_alive, processes
from latentdiff.config import GenerateConfig
from latentdiff.stages import generate
from latentdiff.stages.generate import main

pytestmark = pytest.mark.skipif(os.name != "posix", reason="keep-alive workers need Unix sockets")

WORKER_START_TIMEOUT_S = 120  # the worker imports torch and diffusers before it answers
WORKER_EXIT_TIMEOUT_S = 30


@pytest.fixture
def runtime_dir(monkeypatch):
    """A private runtime folder with a short path (pytest's tmp_path can pass the ~100-byte socket limit)."""
    folder = Path(tempfile.mkdtemp(prefix="ld-", dir="/tmp"))
    monkeypatch.setenv(processes.RUNTIME_DIR_ENV, str(folder))
    monkeypatch.delenv(keep_alive.KEEP_ALIVE_ENV, raising=False)
    yield folder
    keep_alive.stop_other_workers("")  # whatever a failed test left running
    shutil.rmtree(folder, ignore_errors=True)


def _socket_of(cfg: GenerateConfig) -> Path:
    path = keep_alive.socket_path(keep_alive.worker_key(cfg))
    assert path is not None
    return path


def _wait_for(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.mark.slow  # 44 s: starts a keep-alive worker process
def test_second_generate_is_answered_by_the_warm_worker_with_identical_images(
        tiny_pipeline_dir, runtime_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    flags = ["a red circle", "--model", str(tiny_pipeline_dir), "--seed", "3", "--num-images", "2", "--steps", "4"]
    assert main([*flags, "--out", "cold", "--keep-alive", "30"]) == 0
    assert "keeping the model loaded in a background worker" in capsys.readouterr().err
    sock = _socket_of(GenerateConfig(model=str(tiny_pipeline_dir)))
    assert _wait_for(sock.exists, WORKER_START_TIMEOUT_S), "the worker never opened its socket"

    # --keep-alive 0: in process it would leave no worker and not touch this one; the worker answers and stops
    assert main([*flags, "--out", "warm", "--keep-alive", "0"]) == 0
    assert _wait_for(lambda: not sock.exists(), 5), "the warm worker did not answer"
    printed = capsys.readouterr()
    assert "warm/00000-3.png" in printed.out  # paths read as they would in process (relative to our folder)
    assert "keeping the model loaded" not in printed.err  # no second worker started
    for name in ("00000-3.png", "00001-4.png"):
        assert np.array_equal(_pixels(tmp_path / "warm" / name), _pixels(tmp_path / "cold" / name))
    assert Image.open(tmp_path / "warm" / "00000-3.png").text["parameters"] == \
        Image.open(tmp_path / "cold" / "00000-3.png").text["parameters"]


@pytest.mark.slow  # 54 s: starts a keep-alive worker process
def test_a_warm_worker_uses_the_new_weights_after_the_model_is_exported_again(
        tiny_pipeline_dir, runtime_dir, tmp_path, monkeypatch, capsys):
    """Retraining into the same --out while a worker holds that model: the next generate shows the new model,
    as it would in process, not the weights the worker loaded before."""
    from helpers.random_pipeline import build_random_pipeline

    monkeypatch.chdir(tmp_path)
    model = shutil.copytree(tiny_pipeline_dir, tmp_path / "model")
    flags = ["a red circle", "--model", str(model), "--seed", "3", "--steps", "2", "--width", "32", "--height", "32"]
    assert main([*flags, "--out", "cold", "--keep-alive", "60"]) == 0
    sock = _socket_of(GenerateConfig(model=str(model)))
    assert _wait_for(sock.exists, WORKER_START_TIMEOUT_S), "the worker never opened its socket"
    capsys.readouterr()
    assert main([*flags, "--out", "warm", "--keep-alive", "60"]) == 0
    assert "keeping the model loaded" not in capsys.readouterr().err  # the worker answered: it holds the model now
    # a re-export: the U-Net folder replaced by a newly trained one (new files). Not written over in place:
    # diffusers memory-maps safetensors weights, so a loaded model would see bytes rewritten in place even
    # without a reload, and this test would not tell.
    retrained = build_random_pipeline(tmp_path / "retrained", "tiny", seed=1)
    shutil.rmtree(model / "unet")
    shutil.copytree(retrained / "unet", model / "unet")
    assert main([*flags, "--out", "after", "--keep-alive", "0"]) == 0
    assert _wait_for(lambda: not sock.exists(), 5), "the warm worker did not answer"
    assert "keeping the model loaded" not in capsys.readouterr().err  # the worker answered, nothing in process
    assert main([*flags, "--out", "in_process", "--keep-alive", "0"]) == 0  # no worker left: runs in process

    image = "00000-3.png"
    assert np.array_equal(_pixels(tmp_path / "warm" / image), _pixels(tmp_path / "cold" / image))
    assert np.array_equal(_pixels(tmp_path / "after" / image), _pixels(tmp_path / "in_process" / image))
    assert not np.array_equal(_pixels(tmp_path / "after" / image), _pixels(tmp_path / "warm" / image))


@pytest.mark.slow  # 61 s: starts two keep-alive worker processes
def test_worker_reports_mistakes_like_the_cli_and_a_new_worker_stops_the_old_one(
        tiny_pipeline_dir, runtime_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    first = GenerateConfig(prompts=["a"], model=str(tiny_pipeline_dir), steps=1, out="o", keep_alive=60)
    keep_alive.start_worker(first, generate.WORKER_MODULE)
    first_sock = _socket_of(first)
    assert _wait_for(first_sock.exists, WORKER_START_TIMEOUT_S)
    bad = GenerateConfig(prompts=["a"], model=str(tiny_pipeline_dir), steps=1, width=30, out="o", keep_alive=60)
    assert keep_alive.run_in_worker(bad) == 2
    assert "--width must be a positive multiple of 8" in capsys.readouterr().err

    other_model = shutil.copytree(tiny_pipeline_dir, tmp_path / "other")
    second = GenerateConfig(prompts=["a"], model=str(other_model), steps=1, out="o", keep_alive=60)
    keep_alive.start_worker(second, generate.WORKER_MODULE)
    assert _wait_for(lambda: not first_sock.exists(), WORKER_START_TIMEOUT_S), "one model stays warm at a time"
    second_sock = _socket_of(second)
    assert second_sock.exists()
    keep_alive.stop_other_workers("")
    assert _wait_for(lambda: not second_sock.exists(), WORKER_EXIT_TIMEOUT_S)


def test_without_a_listening_worker_generate_runs_in_process(runtime_dir, tmp_path):
    cfg = GenerateConfig(prompts=["a"], model=str(tmp_path), out=str(tmp_path / "o"))
    assert keep_alive.run_in_worker(cfg) is None  # no socket at all
    stale = _socket_of(cfg)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(stale))  # a socket file nobody listens on: a worker that was killed
    dead.close()
    assert keep_alive.run_in_worker(cfg) is None


def test_a_worker_is_only_reused_for_the_same_model_and_thread_settings(runtime_dir, tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    key_a = keep_alive.worker_key(GenerateConfig(model=str(tmp_path / "a")))
    monkeypatch.chdir(tmp_path)
    assert keep_alive.worker_key(GenerateConfig(model="a")) == key_a  # relative or absolute: one model
    assert keep_alive.worker_key(GenerateConfig(model="b")) != key_a
    assert keep_alive.worker_key(GenerateConfig(model="a", device="cpu")) != key_a
    assert keep_alive.worker_key(GenerateConfig(model="a", threads=1)) != key_a
    assert keep_alive.worker_key(GenerateConfig(model="a", backend="onnx")) != key_a
    monkeypatch.setenv("LATENTDIFF_BACKEND", "openvino")
    assert keep_alive.worker_key(GenerateConfig(model="a")) != key_a
    monkeypatch.setenv("LATENTDIFF_BACKEND", "torch")  # as tests/conftest.py has it
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    assert keep_alive.worker_key(GenerateConfig(model="a")) != key_a


def test_the_worker_binds_its_socket_before_importing_torch():
    """A `generate` typed while the worker starts must find its socket and wait, not load the model again:
    the worker's entry module imports neither torch nor diffusers (stages/generate_worker.py)."""
    import subprocess
    import sys

    probe = ("import sys, latentdiff.stages.generate_worker; "
             "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_worker_starts_with_the_thread_count_of_the_call_that_left_it(runtime_dir, monkeypatch):
    import subprocess

    started = {}
    monkeypatch.setattr(subprocess, "Popen", lambda command, **kwargs: started.update(kwargs))
    keep_alive.start_worker(GenerateConfig(model="a", keep_alive=60), "latentdiff.stages.generate_worker", threads=3)
    assert started["env"]["OMP_NUM_THREADS"] == "3"


def test_threads_below_one_are_refused_before_any_worker_is_asked(runtime_dir, capsys):
    from latentdiff.stages import generate

    assert generate.main(["a red circle", "--threads", "0"]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err


def test_keep_alive_flag_beats_the_environment(monkeypatch):
    monkeypatch.delenv(keep_alive.KEEP_ALIVE_ENV, raising=False)
    assert keep_alive.keep_alive_seconds(GenerateConfig()) == keep_alive.DEFAULT_KEEP_ALIVE_S
    monkeypatch.setenv(keep_alive.KEEP_ALIVE_ENV, "0")
    assert keep_alive.keep_alive_seconds(GenerateConfig()) == 0
    assert keep_alive.keep_alive_seconds(GenerateConfig(keep_alive=12)) == 12


def test_a_folder_others_can_open_is_never_used(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    monkeypatch.setenv(processes.RUNTIME_DIR_ENV, str(shared))
    assert processes.runtime_dir() is None
    assert keep_alive.socket_path("abc") is None


@pytest.mark.slow  # 73 s: starts worker and server processes
def test_ps_lists_workers_and_servers_with_model_and_memory_and_stop_ends_them(
        tiny_pipeline_dir, runtime_dir, tmp_path, monkeypatch, capsys):
    from helpers.live_server import live_server
    from latentdiff.stages import ps, stop

    monkeypatch.chdir(tmp_path)
    worker_cfg = GenerateConfig(prompts=["a"], model=str(tiny_pipeline_dir), steps=1, out="o", keep_alive=120)
    keep_alive.start_worker(worker_cfg, generate.WORKER_MODULE)  # loads while the server starts
    with live_server(tiny_pipeline_dir) as server:
        assert _wait_for(_socket_of(worker_cfg).exists, WORKER_START_TIMEOUT_S), "the worker never opened its socket"
        capsys.readouterr()
        assert ps.main([]) == 0
        rows = {line.split()[1]: line for line in capsys.readouterr().out.splitlines()[1:]}
        assert set(rows) == {"worker", "server"}, rows
        assert str(server.process.pid) in rows["server"] and server.url in rows["server"]
        assert str(tiny_pipeline_dir) in rows["worker"] and "unloads in" in rows["worker"]
        for row in rows.values():
            assert " MB " in row or " GB " in row  # resident memory: a loaded model is megabytes at least

        assert stop.main([str(server.process.pid)]) == 0  # by PID: the server shuts down as on Ctrl-C
        server.process.wait(timeout=WORKER_EXIT_TIMEOUT_S)
        # uvicorn's "Shutting down", or our "interrupted." when the signal lands before uvicorn handles signals
        assert "Shutting down" in server.log() or "latentdiff serve: interrupted." in server.log(), server.log()
        assert not list(runtime_dir.glob("server-*"))  # it cleaned up itself
        assert stop.main([str(tiny_pipeline_dir)]) == 0  # by model folder: the worker
        assert _wait_for(lambda: not _socket_of(worker_cfg).exists(), WORKER_EXIT_TIMEOUT_S)
        printed = capsys.readouterr().out
        assert f"stopped server {server.process.pid}" in printed and "stopped worker" in printed
        assert ps.main([]) == 0
        assert "No latentdiff workers or servers are running." in capsys.readouterr().out


def test_ps_forgets_processes_that_died_and_stop_names_an_unknown_target(runtime_dir, capsys):
    import json
    import subprocess
    import sys

    from latentdiff import processes
    from latentdiff.stages import ps, stop

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    card = runtime_dir / f"server-{gone.stdout.strip()}{processes.CARD_SUFFIX}"  # a server killed with SIGKILL
    card.write_text(json.dumps({"kind": "server", "pid": int(gone.stdout), "model": "shapes"}))
    assert ps.main([]) == 0
    assert "No latentdiff workers or servers are running." in capsys.readouterr().out and not card.exists()
    assert stop.main(["shapes"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No running worker or server matches 'shapes'" in err
