"""The whole chain as a user runs it: `prepare-data shapes` -> `train` (CLIP, VAE, U-Net, tiny presets, a
few steps each) -> a pipeline folder that `StableDiffusionPipeline.from_pretrained(dir)` loads with nothing
else and that generates a 64x64 image; rerunning `train` on the finished run trains nothing."""

from __future__ import annotations

import json

import pytest
import torch

from latentdiff import cli
from latentdiff.checkpoint import is_stage_complete

pytestmark = pytest.mark.slow

IMAGE_SIZE = 64


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("chain")
    data, run = root / "shapes", root / "run"
    assert cli.main(["prepare-data", "shapes", "--out", str(data), "--num-images", "96", "--image-size",
                     str(IMAGE_SIZE)]) == 0
    assert cli.main(["train", "--data", str(data), "--out", str(run), "--preset", "tiny", "--batch-size", "8",
                     "--clip-max-steps", "6", "--vae-max-steps", "10", "--unet-max-steps", "6"]) == 0
    return data, run


def test_train_writes_three_loadable_stages_and_a_pipeline_that_generates(run_dir):
    from diffusers import AutoencoderKL, StableDiffusionPipeline
    from transformers import CLIPModel

    data, run = run_dir
    for name in ("clip", "vae", "pipeline"):
        assert is_stage_complete(run / name), name
    CLIPModel.from_pretrained(run / "clip")
    vae = AutoencoderKL.from_pretrained(run / "vae")
    assert vae.config.scaling_factor != pytest.approx(0.18215)  # measured on the shapes images
    assert json.loads((run / "latentdiff_config.json").read_text())["config"]["preset"] == "tiny"

    pipe = StableDiffusionPipeline.from_pretrained(run / "pipeline")
    # The pipeline's VAE is the one train-vae wrote, scaling factor included.
    assert pipe.vae.config.scaling_factor == pytest.approx(vae.config.scaling_factor)
    image = pipe("a red circle", num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                 output_type="pil").images[0]
    assert image.size == (IMAGE_SIZE, IMAGE_SIZE)


def test_rerunning_train_on_a_finished_run_skips_every_stage(run_dir, capsys):
    data, run = run_dir
    stamps = {p: p.stat().st_mtime_ns for p in run.rglob("*.safetensors")}
    capsys.readouterr()
    assert cli.main(["train", "--data", str(data), "--out", str(run), "--preset", "tiny", "--batch-size", "8",
                     "--clip-max-steps", "6", "--vae-max-steps", "10", "--unet-max-steps", "6"]) == 0
    out = capsys.readouterr().out
    assert out.count("is complete, skipping") == 3, out
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*.safetensors")} == stamps  # nothing rewritten
