"""scripts/bundle_model.py: it bundles a pipeline with the CLIP folder its text encoder came from into a folder
plain diffusers and transformers load, and refuses, in one sentence that names the folder, a mistyped path or a CLIP
whose text tower is not the pipeline's (CLIP retrieval would then score with another encoder than generation)."""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
MODELS = Path(__file__).resolve().parents[2] / "src" / "latentdiff"
EMOJI, SHAPES = MODELS / "default_model", MODELS / "shapes_model"


@pytest.fixture
def bundle(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))
    return importlib.import_module("bundle_model")


@pytest.fixture
def run(tmp_path):
    """A `latentdiff train` run folder holding the bundled emoji model's pipeline and CLIP."""
    run = tmp_path / "run"
    shutil.copytree(EMOJI, run / "pipeline", ignore=shutil.ignore_patterns("clip"))
    shutil.copytree(EMOJI / "clip", run / "clip")
    return run


def test_a_bundle_loads_in_diffusers_and_transformers_with_its_guidance(bundle, run, tmp_path):
    out = tmp_path / "bundled"
    assert bundle.main(["--run", str(run), "--guidance", "2", "--out", str(out)]) == 0
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPModel

    assert StableDiffusionPipeline.from_pretrained(out).unet is not None
    assert CLIPModel.from_pretrained(out / "clip").text_model is not None
    assert json.loads((out / "latentdiff_model.json").read_text())["guidance"] == 2


@pytest.mark.parametrize("flag", ["--pipeline", "--vae", "--clip"])
def test_a_mistyped_folder_is_named_and_nothing_is_written(bundle, run, tmp_path, flag):
    out = tmp_path / "bundled"
    with pytest.raises(SystemExit, match=rf"given as {flag}\) is not a folder: check the path"):
        bundle.main(["--run", str(run), flag, str(tmp_path / "typo"), "--out", str(out)])
    assert not out.exists()


def test_a_run_without_its_clip_says_to_finish_the_run(bundle, run, tmp_path):
    shutil.rmtree(run / "clip")
    with pytest.raises(SystemExit, match="does not exist: finish `latentdiff train"):
        bundle.main(["--run", str(run), "--out", str(tmp_path / "bundled")])


def test_a_clip_of_another_text_encoder_is_refused(bundle, run, tmp_path):
    out = tmp_path / "bundled"
    # The shapes model's CLIP: a valid folder, but not the text encoder this pipeline was trained on.
    with pytest.raises(SystemExit, match="text tower is not the pipeline's text encoder"):
        bundle.main(["--run", str(run), "--clip", str(SHAPES / "clip"), "--out", str(out)])
    assert not out.exists()


def test_a_folder_of_the_wrong_kind_is_named_and_nothing_is_written(bundle, run, tmp_path):
    out = tmp_path / "bundled"
    # The run folder itself given as the pipeline: it holds one, but is not one.
    with pytest.raises(SystemExit, match=r"given as --pipeline\) is a run folder, not a diffusers pipeline folder"
                                         r".*a run folder goes to --run"):
        bundle.main(["--run", str(run), "--pipeline", str(run), "--out", str(out)])
    # A pipeline given as the CLIP.
    with pytest.raises(SystemExit, match=r"given as --clip\) is a pipeline folder, not a CLIPModel folder"):
        bundle.main(["--run", str(run), "--clip", str(run / "pipeline"), "--out", str(out)])
    with pytest.raises(SystemExit, match=r"given as --vae\) is a pipeline folder, not an AutoencoderKL folder: its VAE is "):
        bundle.main(["--run", str(run), "--vae", str(run / "pipeline"), "--out", str(out)])
    # An unfinished train-unet --out: a folder, but no model in it yet.
    unfinished = tmp_path / "unfinished"
    (unfinished / "training_state").mkdir(parents=True)
    with pytest.raises(SystemExit, match=r"given as --pipeline\) is not a diffusers pipeline folder .*: check the "
                                         r"path, or finish the training run"):
        bundle.main(["--run", str(run), "--pipeline", str(unfinished), "--out", str(out)])
    assert not out.exists()


def test_a_pipelines_own_vae_folder_is_taken(bundle, run, tmp_path):
    out = tmp_path / "bundled"
    assert bundle.main(["--run", str(run), "--vae", str(run / "pipeline" / "vae"), "--out", str(out)]) == 0
    assert (out / "vae" / "config.json").is_file()


def test_a_text_encoder_trained_with_the_unet_is_bundled_beside_the_clip_it_started_from(bundle, run, tmp_path):
    """`train-unet --train-text-encoder` moves the pipeline's text encoder away from the CLIP's text tower: the
    bundle keeps both (generation with the trained one, CLIP score with the CLIP whose towers were trained
    together); the same difference without that record is refused as a wrong --clip."""
    import torch
    from safetensors.torch import load_file, save_file

    weights = run / "pipeline" / "text_encoder" / "model.safetensors"
    tensors = load_file(weights)
    name = next(k for k in tensors if k.endswith("final_layer_norm.bias"))
    tensors[name] = tensors[name] + 0.5
    save_file(tensors, weights)
    with pytest.raises(SystemExit, match="text tower is not the pipeline's text encoder"):
        bundle.main(["--run", str(run), "--out", str(tmp_path / "refused")])
    (run / "pipeline" / "latentdiff_config.json").write_text(json.dumps({"config": {"train_text_encoder": True}}))
    out = tmp_path / "bundled"
    assert bundle.main(["--run", str(run), "--out", str(out)]) == 0
    bundled = load_file(out / "text_encoder" / "model.safetensors")[name]
    clip = load_file(out / "clip" / "model.safetensors")["text_model." + name.removeprefix("text_model.")]
    assert torch.equal(bundled, tensors[name].half()) and not torch.equal(bundled, clip)
