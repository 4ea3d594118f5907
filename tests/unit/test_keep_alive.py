"""`latentdiff generate`'s keep-alive worker: the next call is answered warm, with the same pixels, and
anything unusual falls back to generating in process."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from latentdiff import keep_alive
from latentdiff.config import GenerateConfig
from latentdiff.stages.generate import main

WORKER_START_TIMEOUT_S = 120  # the worker imports torch and diffusers before it answers


@pytest.fixture
def runtime_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "runtime"
    monkeypatch.setenv(keep_alive.RUNTIME_DIR_ENV, str(folder))
    monkeypatch.delenv(keep_alive.KEEP_ALIVE_ENV, raising=False)
    return folder


def _wait_for(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_second_generate_is_answered_by_the_warm_worker_with_identical_images(
        tiny_pipeline_dir, runtime_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    flags = ["a red circle", "--model", str(tiny_pipeline_dir), "--seed", "3", "--num-images", "2", "--steps", "4"]
    assert main([*flags, "--out", "cold", "--keep-alive", "30"]) == 0
    assert "background worker" in capsys.readouterr().err
    cfg = GenerateConfig(prompts=["a red circle"], model=str(tiny_pipeline_dir), seed=3, num_images=2, steps=4,
                         out="warm", keep_alive=0)  # 0: the worker stops after answering
    sock = keep_alive.socket_path(keep_alive.worker_key(cfg))
    assert _wait_for(sock.exists, WORKER_START_TIMEOUT_S), "the worker never opened its socket"

    assert keep_alive.run_in_worker(cfg) == 0  # not None: the worker answered
    printed = capsys.readouterr().out
    assert "warm/00000-3.png" in printed  # paths read as they would in process (relative to our folder)
    for name in ("00000-3.png", "00001-4.png"):
        assert np.array_equal(_pixels(tmp_path / "warm" / name), _pixels(tmp_path / "cold" / name))
    assert Image.open(tmp_path / "warm" / "00000-3.png").text["parameters"] == \
        Image.open(tmp_path / "cold" / "00000-3.png").text["parameters"]
    assert _wait_for(lambda: not sock.exists(), 30), "--keep-alive 0 should stop the worker"


def test_worker_reports_a_users_mistake_like_the_cli(tiny_pipeline_dir, runtime_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    good = GenerateConfig(prompts=["a"], model=str(tiny_pipeline_dir), steps=1, out="o", keep_alive=20)
    keep_alive.start_worker(good)
    sock = keep_alive.socket_path(keep_alive.worker_key(good))
    assert _wait_for(sock.exists, WORKER_START_TIMEOUT_S)
    bad = GenerateConfig(prompts=["a"], model=str(tiny_pipeline_dir), steps=1, width=30, out="o", keep_alive=0)
    assert keep_alive.run_in_worker(bad) == 2
    assert "--width must be a positive multiple of 8" in capsys.readouterr().err
    assert _wait_for(lambda: not sock.exists(), 30)


def test_without_a_listening_worker_generate_runs_in_process(runtime_dir, tmp_path):
    cfg = GenerateConfig(prompts=["a"], model=str(tmp_path), out=str(tmp_path / "o"))
    assert keep_alive.run_in_worker(cfg) is None  # no socket at all
    stale = keep_alive.socket_path(keep_alive.worker_key(cfg))
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
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    assert keep_alive.worker_key(GenerateConfig(model="a")) != key_a


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
    monkeypatch.setenv(keep_alive.RUNTIME_DIR_ENV, str(shared))
    assert keep_alive.runtime_dir() is None
    assert keep_alive.socket_path("abc") is None
