"""`latentdiff evaluate` on a pipeline trained by the real tiny chain (`latentdiff train`): it writes
metrics.json and report.md with the numbers, finds the run's CLIP for CLIP score and retrieval, and gives
the same numbers when run again."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.eval_data import as_tensor, lite0, vae_scores_by_hand

from latentdiff.config import EvaluateConfig
from latentdiff.stages import evaluate

pytestmark = pytest.mark.slow

NUM_SAMPLES = 20


@pytest.fixture(scope="module")
def trained_run(trained_chain):
    """The session's tiny chain (tests/e2e/conftest.py): a `shapes` dataset of 500 images and a `train` run."""
    return trained_chain.data, trained_chain.run


def top1_by_hand(samples, data, count: int) -> float:
    """Share of the saved samples (one per test caption, in order) whose nearest real test image in
    EfficientNet-Lite0 features (Euclidean; ties to the first) carries the caption the sample was made from."""
    from PIL import Image

    records = [json.loads(line) for line in (data / "test" / "metadata.jsonl").read_text().splitlines()[:count]]
    real = [np.asarray(Image.open(data / "test" / r["file_name"]).convert("RGB")) for r in records]
    made = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(samples.glob("*.png"))]
    assert len(made) == count
    real_features, made_features = (lite0()(as_tensor(images)).double().numpy() for images in (real, made))
    distances = ((made_features[:, None, :] - real_features[None, :, :]) ** 2).sum(axis=-1)  # (made, real)
    nearest = distances.argmin(axis=1)
    return float(np.mean([records[i]["text"][0] in records[j]["text"] for i, j in enumerate(nearest)]))


def _evaluate(data, model, out, **kwargs):
    return evaluate.run(EvaluateConfig(model=str(model), data=str(data), out=str(out), num_samples=NUM_SAMPLES,
                                       steps=4, **kwargs))


def test_evaluate_trained_tiny_pipeline(trained_run, tmp_path):
    data, run_dir = trained_run
    out = tmp_path / "eval"
    payload = _evaluate(data, run_dir / "pipeline", out, guidance_sweep=[1.0, 3.0])

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(payload))  # the file holds what run() returned
    generation = metrics["generation"]
    fidelity = generation["fidelity"]
    assert fidelity["num_images"] == NUM_SAMPLES and fidelity["noise_floor"] < fidelity["fd_lite0_half"]
    # prompt fidelity of the saved samples, by hand: is the real image nearest to sample i one of caption i's?
    assert generation["prompt_fidelity"]["top1"] == pytest.approx(top1_by_hand(out / "samples", data, NUM_SAMPLES))
    assert set(generation["attributes"]["accuracy"]) >= {"colors", "shapes", "counting", "overall"}
    assert metrics["real_reference"]["attributes"]["accuracy"]["overall"] == 1.0
    assert metrics["real_reference"]["prompt_fidelity"]["top1"] == 1.0
    # the run's own CLIP (RUN/clip, beside the pipeline) was found and is the pipeline's text encoder
    assert metrics["protocol"]["clip"] == str((run_dir / "clip").resolve())
    assert "clip_score" in generation and "retrieval" in metrics["clip"]
    assert not any("text tower" in note for note in metrics["notes"])
    psnr_db, ssim = vae_scores_by_hand(run_dir / "pipeline" / "vae", data, "test", NUM_SAMPLES)
    assert metrics["vae"]["psnr_db"] == pytest.approx(psnr_db, abs=1e-3)
    assert metrics["vae"]["ssim"] == pytest.approx(ssim, abs=1e-4)
    assert [row["guidance"] for row in metrics["guidance_sweep"]] == [1.0, 3.0]
    for key in ("seeds", "steps", "scheduler", "guidance", "generated_size", "feature_extractor", "model_hash", "split"):
        assert key in metrics["protocol"]

    report = (out / "report.md").read_text()
    assert f"{fidelity['fd_lite0']:.3f}" in report and f"{fidelity['noise_floor']:.3f}" in report
    assert "Guidance sweep" in report and "CLIP retrieval" in report and "VAE reconstructions" in report
    assert f"on flat pixels ({metrics['vae']['flat_fraction']:.2f} of them" in report
    for name in ("samples_grid.png", "guidance_sweep.png", "latentdiff_config.json"):
        assert (out / name).stat().st_size > 0
    assert len(list((out / "samples").glob("*.png"))) == NUM_SAMPLES

    # same inputs, same numbers
    again = tmp_path / "again"
    _evaluate(data, run_dir / "pipeline", again, guidance_sweep=[1.0, 3.0])
    assert (again / "metrics.json").read_text() == (out / "metrics.json").read_text()


def test_samples_are_what_generate_writes(trained_run, tmp_path):
    """The evaluated image of caption i is the image `latentdiff generate` gives for that caption and seed."""
    from PIL import Image

    from latentdiff.config import GenerateConfig
    from latentdiff.stages import generate

    data, run_dir = trained_run
    out = tmp_path / "eval"
    payload = _evaluate(data, run_dir / "pipeline", out, seed=5)
    caption = next(iter(open(data / "test" / "metadata.jsonl")))
    first_caption = json.loads(caption)["text"][0]
    paths = generate.run(GenerateConfig(prompts=[first_caption], model=str(run_dir / "pipeline"), seed=5, steps=4,
                                        out=str(tmp_path / "gen")))
    evaluated = sorted((out / "samples").glob("00000-*.png"))[0]
    # evaluate denoises a batch of 8, generate this one image alone: the same noise and the same model,
    # but batched and single matrix products may round differently in the last bit, so pixels may move
    # by 1/255 (the tolerance for any change of batching or speed-up), never more.
    generated = np.asarray(Image.open(paths[0]), dtype=np.int16)
    in_evaluation = np.asarray(Image.open(evaluated), dtype=np.int16)
    assert generated.shape == in_evaluation.shape
    assert np.abs(generated - in_evaluation).max() <= 1
    assert payload["protocol"]["seeds"].startswith("5..")
