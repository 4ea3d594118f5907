"""`latentdiff evaluate` as a user runs it: what each kind of model folder gets, and bad input."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers.eval_data import prepare_shapes, vae_scores_by_hand
from helpers.unet_components import write_tiny_clip

from latentdiff.config import EvaluateConfig
from latentdiff.errors import UserError
from latentdiff.stages import evaluate

NUM_SAMPLES = 20


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory):
    data = prepare_shapes(tmp_path_factory.mktemp("eval") / "shapes", num_images=500)
    assert json.loads((data / "manifest.json").read_text())["counts"]["test"] >= NUM_SAMPLES
    return data


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory, shapes_dir):
    from latentdiff.data.prepared import open_prepared

    captions = sorted({c for r in open_prepared(shapes_dir).records("train")[:100] for c in r.captions})
    return write_tiny_clip(tmp_path_factory.mktemp("clip") / "clip", captions)


def _config(model, data, out, **kwargs) -> EvaluateConfig:
    return EvaluateConfig(model=str(model), data=str(data), out=str(out), num_samples=NUM_SAMPLES, steps=2, **kwargs)


def test_clip_folder_gets_retrieval_both_ways_and_the_same_numbers_twice(clip_dir, shapes_dir, tmp_path):
    payload = evaluate.run(_config(clip_dir, shapes_dir, tmp_path / "a"))
    retrieval = payload["clip"]["retrieval"]
    for direction in ("image_to_text", "text_to_image"):
        assert 0 <= retrieval[direction]["R@1"] <= retrieval[direction]["R@5"] <= retrieval[direction]["R@10"] <= 1
        assert 1 <= retrieval[direction]["median_rank"]
    assert payload["protocol"]["model_kind"] == "clip" and len(payload["protocol"]["model_hash"]) == 10
    assert "generation" not in payload and "vae" not in payload
    report = (tmp_path / "a" / "report.md").read_text()
    assert "CLIP retrieval" in report and f"{retrieval['text_to_image']['R@1']:.3f}" in report
    assert (tmp_path / "a" / "latentdiff_config.json").is_file()
    evaluate.run(_config(clip_dir, shapes_dir, tmp_path / "b"))
    assert (tmp_path / "a" / "metrics.json").read_text() == (tmp_path / "b" / "metrics.json").read_text()


@pytest.mark.slow  # 20 s: EfficientNet features of real and reconstructed images
def test_vae_folder_gets_reconstruction_metrics(tiny_pipeline_dir, shapes_dir, tmp_path):
    payload = evaluate.run(_config(tiny_pipeline_dir / "vae", shapes_dir, tmp_path))
    vae = payload["vae"]
    psnr_db, ssim = vae_scores_by_hand(tiny_pipeline_dir / "vae", shapes_dir, "test", NUM_SAMPLES)
    assert vae["psnr_db"] == pytest.approx(psnr_db, abs=1e-3) and vae["ssim"] == pytest.approx(ssim, abs=1e-4)
    assert vae["fidelity"]["fd_lite0_half"] > vae["fidelity"]["noise_floor"]  # a random VAE is worse than real images
    assert payload["protocol"]["model_kind"] == "vae" and payload["protocol"]["num_samples"] == NUM_SAMPLES
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["vae"]["psnr_db"] == pytest.approx(vae["psnr_db"])
    assert "PSNR" in (tmp_path / "report.md").read_text() and (tmp_path / "samples_grid.png").is_file()
    # shapes data: the analyser reads the reconstructions too; a random VAE's lose the real images' 1.0
    assert vae["attributes"]["num_images"]["colors"] == NUM_SAMPLES
    assert vae["attributes"]["accuracy"]["colors"] < 0.5
    assert "attributes of the reconstructions: colors" in (tmp_path / "report.md").read_text()


def _error(cfg) -> str:
    with pytest.raises(UserError) as err:
        evaluate.run(cfg)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_dataset_without_a_test_split(tiny_pipeline_dir, shapes_dir, tmp_path):
    data = tmp_path / "no_test"
    shutil.copytree(shapes_dir, data)
    shutil.rmtree(data / "test")
    assert "no 'test' images" in _error(_config(tiny_pipeline_dir, data, tmp_path / "out"))
    assert not (tmp_path / "out").exists()  # nothing written before the check


def test_pipeline_folder_missing_a_component(tiny_pipeline_dir, shapes_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_pipeline_dir, broken)
    shutil.rmtree(broken / "unet")
    assert "unet" in _error(_config(broken, shapes_dir, tmp_path / "out"))


def test_too_few_images_says_how_many_are_needed(tiny_pipeline_dir, shapes_dir, tmp_path):
    cfg = _config(tiny_pipeline_dir, shapes_dir, tmp_path / "out")
    cfg.num_samples = 7
    message = _error(cfg)
    assert "at least 20" in message and "only 7" in message


def test_folder_that_is_no_model(shapes_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    assert "not a pipeline folder" in _error(_config(tmp_path / "empty", shapes_dir, tmp_path / "out"))


def test_clip_option_must_be_a_clip_folder(tiny_pipeline_dir, shapes_dir, tmp_path):
    cfg = _config(tiny_pipeline_dir, shapes_dir, tmp_path / "out", clip=str(tiny_pipeline_dir / "vae"))
    assert "not a CLIP folder" in _error(cfg)


def test_cli_prints_one_sentence_and_exits_2(shapes_dir, tmp_path, capsys):
    code = evaluate.main(["--model", str(tmp_path / "missing"), "--data", str(shapes_dir)])
    assert code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_seed_out_of_range_is_refused_before_any_work(tiny_pipeline_dir, shapes_dir, tmp_path):
    for seed in (2**32, -2):
        message = _error(_config(tiny_pipeline_dir, shapes_dir, tmp_path / "out", seed=seed))
        assert "--seed must be between 0 and 4294967295, or -1" in message
    assert not (tmp_path / "out").exists()


def test_seed_minus_one_is_drawn_once_recorded_and_gives_the_same_numbers_again(tiny_pipeline_dir, shapes_dir,
                                                                                tmp_path):
    first = evaluate.run(_config(tiny_pipeline_dir, shapes_dir, tmp_path / "random", seed=-1))
    seed = json.loads((tmp_path / "random" / "latentdiff_config.json").read_text())["config"]["seed"]
    assert 0 <= seed and first["protocol"]["seeds"].startswith(f"{seed}..")
    again = evaluate.run(_config(tiny_pipeline_dir, shapes_dir, tmp_path / "again", seed=seed))
    assert again["generation"] == first["generation"]
