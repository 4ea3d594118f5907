"""SIGKILL a real `latentdiff train-clip` run after a checkpoint, rerun the same command, and get weights
bit-identical to a run that was never interrupted (CPU): on an imagefolder dataset, on the same data as
webdataset tar shards, and with two processes (`accelerate launch`, gloo) reading the shards; and the same for
`latentdiff align-text`, whose task keeps the frozen teacher's targets beside the trained text model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from pathlib import Path

import psutil
import pytest
from helpers.clip_data import write_tiny_clip_dataset

from latentdiff import checkpoint
from latentdiff.data.shards import pack_webdataset

pytestmark = pytest.mark.slow

NUM_STEPS = 30
KILL_AFTER_STEP = 10


def _command(data, out, processes=1):
    launch = [sys.executable, "-m"]
    if processes > 1:  # as tests/e2e/test_multiprocess.py: torchrun processes joined into one gloo group
        launch = [str(Path(sys.executable).with_name("accelerate")), "launch", "--multi_gpu", "--num_processes",
                  str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m"]
    return [*launch, "latentdiff", "train-clip", "--data", str(data), "--out", str(out),
            "--preset", "tiny", "--max-steps", str(NUM_STEPS), "--batch-size", "8", "--lr", "1e-3",
            "--warmup-steps", "5", "--ema-decay", "0.9", "--checkpoint-every", "5", "--validate-every", "15",
            "--seed", "7"]


BUNDLED_CLIP = Path(__file__).resolve().parents[2] / "src" / "latentdiff" / "default_model" / "clip"


def _align_command(data, out):
    return [sys.executable, "-m", "latentdiff", "align-text", "--clip", str(BUNDLED_CLIP), "--data", str(data),
            "--out", str(out), "--max-steps", str(NUM_STEPS), "--batch-size", "8", "--lr", "1e-3", "--warmup-steps", "5",
            "--ema-decay", "0.9", "--checkpoint-every", "5", "--validate-every", "15", "--seed", "7"]


def _kill_after_a_checkpoint_and_resume(command, out, env, log_path):
    """Start `command`, SIGKILL it (and its workers) once it has checkpointed step KILL_AFTER_STEP, check it left no
    finished model, rerun it; returns the rerun's stdout."""
    log = open(log_path, "w")
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        steps = [s for s, _ in checkpoint.list_checkpoints(out)]
        if steps and steps[-1] >= KILL_AFTER_STEP:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed mid-way"
    # the launcher and every training process at once (torchrun starts its workers in their own sessions)
    workers = psutil.Process(proc.pid).children(recursive=True)
    for process in [psutil.Process(proc.pid), *workers]:
        process.send_signal(signal.SIGKILL)
    proc.wait()
    psutil.wait_procs(workers, timeout=30)
    log.close()
    steps = [s for s, _ in checkpoint.list_checkpoints(out)]
    assert steps and KILL_AFTER_STEP <= steps[-1] < NUM_STEPS
    assert not checkpoint.is_stage_complete(out) and not (out / "model.safetensors").exists()

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stdout
    assert checkpoint.is_stage_complete(out)
    return resumed.stdout


@pytest.mark.parametrize("layout, processes", [("imagefolder", 1), ("webdataset", 1), ("webdataset", 2)])
def test_sigkilled_run_resumes_to_bit_identical_weights(tmp_path, layout, processes):
    data = write_tiny_clip_dataset(tmp_path / "data")
    if layout == "webdataset":
        pack_webdataset(data, samples_per_shard=10)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}

    reference = tmp_path / "reference"
    subprocess.run(_command(data, reference, processes), check=True, env=env, capture_output=True, timeout=600)

    interrupted = tmp_path / "interrupted"
    _kill_after_a_checkpoint_and_resume(_command(data, interrupted, processes), interrupted, env, tmp_path / "killed.log")
    if processes > 1:
        state = json.loads((checkpoint.latest_checkpoint(interrupted) / checkpoint.STATE_FILE).read_text())
        assert state["world_size"] == processes
    assert (interrupted / "model.safetensors").read_bytes() == (reference / "model.safetensors").read_bytes()
    assert (interrupted / "retrieval_metrics.json").read_text() == (reference / "retrieval_metrics.json").read_text()


def test_sigkilled_text_alignment_resumes_to_bit_identical_weights(tmp_path):
    data = write_tiny_clip_dataset(tmp_path / "data")  # 48 images, English and Chinese: 96 captions, 12 steps an epoch
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    reference = tmp_path / "reference"
    subprocess.run(_align_command(data, reference), check=True, env=env, capture_output=True, timeout=600)

    interrupted = tmp_path / "interrupted"
    _kill_after_a_checkpoint_and_resume(_align_command(data, interrupted), interrupted, env, tmp_path / "killed.log")
    assert (interrupted / "model.safetensors").read_bytes() == (reference / "model.safetensors").read_bytes()
    metrics = [json.loads((out / "alignment_metrics.json").read_text()) for out in (interrupted, reference)]
    assert metrics[0] == metrics[1] and metrics[0]["final_relative_loss"] is not None
