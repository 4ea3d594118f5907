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
