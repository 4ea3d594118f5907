"""benchmarks/speedrun.py --measure: a folder that is not a finished pipeline (e.g. a train-unet run still
training) is refused in one sentence before anything is loaded or written, not with a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SPEEDRUN = Path(__file__).resolve().parents[2] / "benchmarks" / "speedrun.py"


def test_measuring_an_unfinished_run_says_what_to_pass(tmp_path):
    run = tmp_path / "still-training"
    (run / "training_state").mkdir(parents=True)
    work = tmp_path / "work"
    result = subprocess.run([sys.executable, str(SPEEDRUN), "--name", "x", "--data", str(tmp_path / "data"),
                             "--measure", str(run), "--work", str(work)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "not a pipeline folder (no model_index.json)" in result.stderr
    assert "Traceback" not in result.stderr and not work.exists()


def test_an_unknown_measurement_is_refused_with_the_choices(tmp_path):
    result = subprocess.run([sys.executable, str(SPEEDRUN), "--name", "x", "--data", str(tmp_path / "data"),
                             "--measure", str(tmp_path), "--splits", "train_spread,flags"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "--splits train_spread,flags: choose from train,train_spread,test" in result.stderr
    assert "Traceback" not in result.stderr


def test_guidance_rescale_reaches_every_diffusers_call(monkeypatch):
    import diffusers

    monkeypatch.syspath_prepend(str(SPEEDRUN.parent))
    from eval_guidance_rescale import rescale_every_call

    seen = []
    # monkeypatch restores diffusers' own __call__ (and so drops the wrapper) after the test
    monkeypatch.setattr(diffusers.StableDiffusionPipeline, "__call__", lambda self, **kwargs: seen.append(kwargs))
    rescale_every_call(0.7)
    diffusers.StableDiffusionPipeline.__call__(None, guidance_scale=2.0)
    assert seen == [{"guidance_scale": 2.0, "guidance_rescale": 0.7}]


def test_guidance_interval_guides_only_inside_it_and_keeps_the_callers_callback(monkeypatch, tiny_pipeline_dir):
    import diffusers

    from latentdiff.generation import GenerationRequest
    from latentdiff.pipeline import TextToImage

    monkeypatch.syspath_prepend(str(SPEEDRUN.parent))
    from eval_guidance_interval import guide_in_interval_every_call

    # monkeypatch restores diffusers' own __call__ and step (and so drops the wrappers) after the test
    monkeypatch.setattr(diffusers.StableDiffusionPipeline, "__call__", diffusers.StableDiffusionPipeline.__call__)
    guide_in_interval_every_call(500, 999, 1.5)
    text_to_image = TextToImage.load(str(tiny_pipeline_dir))
    scales, original_step = [], diffusers.DPMSolverMultistepScheduler.step

    def record_scale(self, model_output, timestep, *args, **kwargs):
        scales.append((int(timestep), text_to_image.pipe.guidance_scale))
        return original_step(self, model_output, timestep, *args, **kwargs)

    monkeypatch.setattr(diffusers.DPMSolverMultistepScheduler, "step", record_scale)
    progress = []
    request = GenerationRequest(prompts=["a red circle"], num_images=1, seed=0, steps=4, guidance=3.0,
                                scheduler="dpmpp-2m", width=32, height=32)
    text_to_image.generate(request, progress_callback=lambda step, total, latents, first: progress.append(step))
    # the tiny scheduler's 4 steps: 801, 601 inside the interval; 401, 201 outside
    assert scales == [(801, 3.0), (601, 3.0), (401, 1.5), (201, 1.5)]
    assert progress == [1, 2, 3, 4]
