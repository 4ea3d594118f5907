"""The recipe scripts of runs/ as a user runs them. runs/emoji_from_nothing.sh shrunk to a few steps per stage
(its knobs): the bundled model's CLIP trained on, aligned, a U-Net from nothing stopped midway and written as a pipeline there, then the same
command going on to the end (not under another MIXED_PRECISION, which would change the run's numbers); a rerun
of a finished chain trains nothing. runs/gpu_emoji.sh, let onto a CPU, trains and measures its whole chain."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from latentdiff import cli
from latentdiff.model_source import DEFAULT_MODEL_DIR

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "runs" / "emoji_from_nothing.sh"


def _run_script(work: Path, data: Path, **env: str) -> subprocess.CompletedProcess:
    knobs = {"PYTHON": sys.executable, "THREADS": "1", "DATA": str(data), "START_CLIP": str(DEFAULT_MODEL_DIR / "clip"),
             "START_VAE": str(DEFAULT_MODEL_DIR), "CLIP_MORE_STEPS": "2", "ALIGN_EPOCHS": "1", "UNET_STEPS": "4",
             "UNET_VALIDATE_EVERY": "0", **env}
    return subprocess.run(["bash", str(SCRIPT), str(work)], env={**os.environ, **knobs}, capture_output=True,
                          text=True, timeout=900)


def test_emoji_from_nothing_stops_midway_writes_that_step_and_goes_on(tmp_path):
    from diffusers import StableDiffusionPipeline

    data, work = tmp_path / "emoji", tmp_path / "work"
    assert cli.main(["prepare-data", "emoji", "--languages", "all", "--max-images", "150", "--out", str(data)]) == 0

    refused = _run_script(work, data, UNET_STOP_AT_STEP="4")
    assert refused.returncode == 2 and "not before the schedule's end" in refused.stderr
    assert not work.exists() or not any(work.iterdir())  # refused before any stage

    stopped = _run_script(work, data, UNET_STOP_AT_STEP="2")
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    assert "stopped at step 2 of 4 (--stop-at-step)" in stopped.stdout
    midway = work / "unet-step-2"
    pipe = StableDiffusionPipeline.from_pretrained(midway)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert not (work / "unet" / "model_index.json").exists()

    switched = _run_script(work, data, MIXED_PRECISION="no")  # the run so far was bf16, the recipe's default
    assert switched.returncode != 0 and "mixed_precision" in switched.stderr, switched.stderr[-2000:]

    finished = _run_script(work, data)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "the pipeline is" in finished.stdout
    StableDiffusionPipeline.from_pretrained(work / "unet")

    again = _run_script(work, data)
    assert again.returncode == 0 and again.stdout.count("nothing to do") == 3, again.stdout[-2000:]


GPU_SCRIPT = SCRIPT.parent / "gpu_emoji.sh"


def test_gpu_emoji_trains_and_measures_its_whole_chain_when_let_onto_a_cpu(tmp_path):
    """runs/gpu_emoji.sh cannot run on a GPU here; GPU_CHECK_ALLOW_CPU=1 runs its chain on the CPU with tiny models
    and a 2-minute budget, so a change that breaks the script (its stages, the alignment, the measurement) shows."""
    import json

    from diffusers import StableDiffusionPipeline

    work = tmp_path / "gpu-emoji"
    assert cli.main(["prepare-data", "emoji", "--languages", "all", "--max-images", "150",
                     "--out", str(work / "data")]) == 0  # the script reuses a prepared WORK/data
    results = tmp_path / "gpu-emoji-2min.json"
    knobs = {"PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "GPU_CHECK_ALLOW_CPU": "1", "CONCEPTS": "2",
             "RESULTS": str(results), "ALIGN_TEXT_FLAGS": "--epochs 1",
             "CLIP_FLAGS": "--preset tiny --batch-size 16", "VAE_FLAGS": "--preset tiny --crop-size 32 --batch-size 8",
             "UNET_FLAGS": "--preset tiny --prediction-type v_prediction --zero-terminal-snr --text-time-embedding "
                           "--batch-size 8"}
    done = subprocess.run(["bash", str(GPU_SCRIPT), str(work), "2"], env={**os.environ, **knobs},
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]

    measured = json.loads(results.read_text())
    assert set(measured["stages"]) == {"clip", "align_text", "vae", "unet"}
    assert all(measured["stages"][stage]["steps"] for stage in ("clip", "vae", "unet"))
    assert set(measured["emoji"]["train"]["languages"]) == {"en", "fr", "es", "de", "zh", "ja"}
    assert "psnr_db" in measured["vae"]
    pipe = StableDiffusionPipeline.from_pretrained(work / "speedrun" / "pipeline")
    assert pipe.scheduler.config.prediction_type == "v_prediction"
