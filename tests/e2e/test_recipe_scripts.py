"""runs/emoji_from_nothing.sh as a user runs it, shrunk to a few steps per stage (its knobs): the bundled model's
CLIP trained on, aligned, a U-Net from nothing stopped midway and written as a pipeline there, then the same
command going on to the end (not under another MIXED_PRECISION, which would change the run's numbers); a rerun
of a finished chain trains nothing."""

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
