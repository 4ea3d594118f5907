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
def run_dir(trained_chain):
    """The session's chain (tests/e2e/conftest.py), made by `latentdiff prepare-data shapes` and `latentdiff train`."""
    return trained_chain.data, trained_chain.run


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


def test_rerunning_train_on_a_finished_run_skips_every_stage(trained_chain, capsys):
    run = trained_chain.run
    stamps = {p: p.stat().st_mtime_ns for p in run.rglob("*.safetensors")}
    capsys.readouterr()
    assert cli.main(list(trained_chain.train_argv)) == 0  # the very command that trained it
    out = capsys.readouterr().out
    assert out.count("is complete, skipping") == 3, out
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*.safetensors")} == stamps  # nothing rewritten


def test_generate_on_the_default_backend_exports_the_trained_pipeline_once_and_names_it(trained_chain, tmp_path,
                                                                                         monkeypatch, capsys):
    from PIL import Image

    monkeypatch.delenv("LATENTDIFF_BACKEND")  # the user's default: onnx on this CPU, exported on first use
    monkeypatch.setenv("LATENTDIFF_CACHE_DIR", str(tmp_path / "cache"))
    argv = ["generate", "a red circle", "--model", str(trained_chain.run / "pipeline"), "--steps", "3", "--seed", "4"]
    assert cli.main([*argv, "--out", str(tmp_path / "first")]) == 0
    assert "(onnx)" in capsys.readouterr().out
    exports = [p for p in (tmp_path / "cache" / "exports").iterdir() if p.is_dir()]  # beside it: its lock file
    assert len(exports) == 1 and exports[0].name.endswith("-onnx")
    stamp = (exports[0] / "unet" / "model.onnx").stat().st_mtime_ns
    assert cli.main([*argv, "--out", str(tmp_path / "second")]) == 0  # reused, not exported again
    assert (exports[0] / "unet" / "model.onnx").stat().st_mtime_ns == stamp
    (first,) = (tmp_path / "first").glob("*.png")
    (second,) = (tmp_path / "second").glob("*.png")
    assert "Backend: onnx" in Image.open(first).info["parameters"]
    assert Image.open(first).tobytes() == Image.open(second).tobytes()
