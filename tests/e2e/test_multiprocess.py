"""The multi-GPU path, exercised on CPU: `accelerate launch ... --num_processes 2 -m latentdiff train-unet
... --preset tiny` trains with two processes (gloo) and saves ONE pipeline that loads.

The launcher flag is `--multi_gpu`, not `--cpu`: in accelerate 1.x, `--cpu --num_processes 2` on one machine
starts a single process unless an MPI launcher is configured (`--mpirun_hostfile`); `--multi_gpu` starts
the processes with torchrun, and on a machine without GPUs the loop joins them into one gloo (MULTI_CPU)
group. The test checks the group really had two members (world_size in the checkpoint)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.unet_components import tiny_unet_argv, write_unet_inputs

pytestmark = pytest.mark.slow


def test_two_process_train_unet_saves_one_loadable_pipeline(tmp_path):
    from diffusers import StableDiffusionPipeline

    paths = write_unet_inputs(tmp_path / "inputs")
    out = tmp_path / "pipeline"
    cache_dir = tmp_path / "cache"
    argv = tiny_unet_argv(paths, out, "--cache-dir", str(cache_dir))
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "latentdiff", "train-unet", *argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two processes on two cores: one thread each
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    state = json.loads(max((out / "training_state").glob("step-*/state.json")).read_text())
    assert state["world_size"] == 2
    # one pipeline (written once, by the main process), one cache (built once, read by both ranks)
    assert json.loads((out / "model_index.json").read_text())["_class_name"] == "StableDiffusionPipeline"
    assert len(list(cache_dir.glob("*.safetensors"))) == 1
    assert not list(cache_dir.glob(".*.tmp"))
    pipe = StableDiffusionPipeline.from_pretrained(out)
    pipe.set_progress_bar_config(disable=True)
    import torch

    image = pipe("a red square", num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (64, 64)


def test_two_processes_keep_a_time_budget(tmp_path):
    # The processes agree on the smallest step count that fits the budget: 1.2 s of 10 ms steps, about a hundred,
    # not the 1,000 --max-steps allows (a count summed over the processes never let the run end).
    script = Path(__file__).resolve().parents[1] / "helpers" / "budget_run.py"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script), str(tmp_path / "run")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ended = int(result.stdout.split("ended at step")[-1].split()[0])
    state = json.loads(max((tmp_path / "run" / "training_state").glob("step-*/state.json")).read_text())
    assert state["world_size"] == 2 and state["step"] == ended
    assert 25 <= ended < 500
