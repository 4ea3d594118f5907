"""SIGKILL a real `latentdiff train-clip` run after a checkpoint, rerun the same command, and get weights
bit-identical to a run that was never interrupted (CPU)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from helpers.clip_data import write_tiny_clip_dataset

from latentdiff import checkpoint

pytestmark = pytest.mark.slow

NUM_STEPS = 30
KILL_AFTER_STEP = 10


def _command(data, out):
    return [sys.executable, "-m", "latentdiff", "train-clip", "--data", str(data), "--out", str(out),
            "--preset", "tiny", "--max-steps", str(NUM_STEPS), "--batch-size", "8", "--lr", "1e-3",
            "--warmup-steps", "5", "--ema-decay", "0.9", "--checkpoint-every", "5", "--validate-every", "15",
            "--seed", "7"]


def test_sigkilled_run_resumes_to_bit_identical_weights(tmp_path):
    data = write_tiny_clip_dataset(tmp_path / "data")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    reference = tmp_path / "reference"
    subprocess.run(_command(data, reference), check=True, env=env, capture_output=True, timeout=600)

    interrupted = tmp_path / "interrupted"
    log = open(tmp_path / "killed.log", "w")
    proc = subprocess.Popen(_command(data, interrupted), env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        steps = [s for s, _ in checkpoint.list_checkpoints(interrupted)]
        if steps and steps[-1] >= KILL_AFTER_STEP:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed mid-way"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    log.close()
    steps = [s for s, _ in checkpoint.list_checkpoints(interrupted)]
    assert steps and KILL_AFTER_STEP <= steps[-1] < NUM_STEPS
    assert not checkpoint.is_stage_complete(interrupted) and not (interrupted / "model.safetensors").exists()

    resumed = subprocess.run(_command(data, interrupted), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stdout
    assert checkpoint.is_stage_complete(interrupted)
    assert (interrupted / "model.safetensors").read_bytes() == (reference / "model.safetensors").read_bytes()
    assert (interrupted / "retrieval_metrics.json").read_text() == (reference / "retrieval_metrics.json").read_text()
