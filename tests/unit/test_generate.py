"""`latentdiff generate` and its Python API: deterministic, identical to plain diffusers, self-describing
PNGs, and one-sentence errors for bad input."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from latentdiff.errors import UserError
from latentdiff.infotext import parse_infotext
from latentdiff.pipeline import GenerationRequest, TextToImage
from latentdiff.stages.generate import main

SIZE = 32  # small images keep the tiny model fast; a multiple of 8 and of the tiny VAE's factor
STEPS = 3


@pytest.fixture(scope="module")
def pipeline(tiny_pipeline_dir) -> TextToImage:
    return TextToImage.load(str(tiny_pipeline_dir), "cpu")


def _request(prompts, **kw) -> GenerationRequest:
    kw = {"seed": 7, "steps": STEPS, "width": SIZE, "height": SIZE, **kw}
    return GenerationRequest(list(prompts), **kw)


def _pixels(results) -> list[np.ndarray]:
    return [np.asarray(r.image).astype(np.int16) for r in results]


def test_same_seed_gives_identical_pixels_twice(pipeline):
    first = _pixels(pipeline.generate(_request(["a red circle"], num_images=2)))
    second = _pixels(pipeline.generate(_request(["a red circle"], num_images=2)))
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not np.array_equal(first[0], first[1])  # image 1 used seed 8, not 7


@pytest.mark.parametrize("scheduler_name, diffusers_class, extra", [
    ("dpmpp-2m", "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    ("euler-a", "EulerAncestralDiscreteScheduler", {}),  # stochastic: noise drawn from the generators
])
def test_identical_to_plain_diffusers(pipeline, tiny_pipeline_dir, scheduler_name, diffusers_class, extra):
    import diffusers
    from diffusers import StableDiffusionPipeline

    prompts = ["a red circle", "a blue square on a white background"]
    ours = pipeline.generate(_request(prompts, scheduler=scheduler_name, negative_prompt="blurry"), batch_size=2)

    plain = StableDiffusionPipeline.from_pretrained(tiny_pipeline_dir)
    plain.scheduler = getattr(diffusers, diffusers_class).from_config(plain.scheduler.config, **extra)
    plain.set_progress_bar_config(disable=True)
    theirs = plain(prompt=prompts, negative_prompt=["blurry"] * 2, num_inference_steps=STEPS, guidance_scale=7.5,
                   height=SIZE, width=SIZE, generator=[torch.Generator("cpu").manual_seed(s) for s in (7, 8)]).images
    for mine, reference in zip(_pixels(ours), [np.asarray(im).astype(np.int16) for im in theirs]):
        assert np.array_equal(mine, reference)  # same weights, same kernels, same noise: the same pixels


def test_image_depends_on_its_seed_only_not_on_batching(pipeline):
    together = pipeline.generate(_request(["a red circle"], num_images=3, seed=10), batch_size=3)
    alone = pipeline.generate(_request(["a red circle"], num_images=1, seed=12), batch_size=1)
    assert [r.seed for r in together] == [10, 11, 12]
    assert np.abs(_pixels(together)[2] - _pixels(alone)[0]).max() <= 1


def test_different_prompts_give_different_images(pipeline):
    a, b = pipeline.generate(_request(["a red circle"])), pipeline.generate(_request(["a green triangle"]))
    assert np.abs(_pixels(a)[0] - _pixels(b)[0]).mean() > 1


def test_random_seed_when_omitted_is_reported_and_gives_the_image_again(pipeline):
    (first,) = pipeline.generate(_request(["a red circle"], seed=None))
    (second,) = pipeline.generate(_request(["a red circle"], seed=None))
    assert first.seed != second.seed  # drawn afresh for each call (equal with odds of about 2**-32)
    assert first.info.seed == first.seed
    (again,) = pipeline.generate(_request(["a red circle"], seed=first.seed))
    assert np.array_equal(_pixels([again])[0], _pixels([first])[0])  # the seed reported is the seed used


def test_long_prompt_is_truncated_with_a_warning(pipeline, caplog):
    long_prompt = "a red circle and a blue square " * 20
    with caplog.at_level(logging.WARNING, logger="latentdiff"):
        pipeline.generate(_request([long_prompt], steps=1))
    assert any("truncated" in rec.getMessage() and str(pipeline.max_prompt_tokens) in rec.getMessage()
               for rec in caplog.records)


def test_a_long_prompt_is_reported_once_by_us_not_again_by_diffusers_or_the_tokenizer(pipeline, caplog):
    with caplog.at_level(logging.WARNING):  # every logger
        pipeline.generate(_request(["a green star on the left " * 20], steps=1))
    notices = [rec for rec in caplog.records if "truncated" in rec.getMessage() or "longer than" in rec.getMessage()]
    assert [rec.name for rec in notices] == ["latentdiff.generate"]


@pytest.mark.parametrize("scheduler", ["dpmpp-2m", "unipc", "euler-a"])
def test_a_multistep_sampler_gives_the_same_image_every_time(pipeline, scheduler):
    """Schedulers keep per-run state; each batch gets a fresh copy of the one built per sampler."""
    runs = [_pixels(pipeline.generate(_request(["a red circle", "a blue square"], seed=3, scheduler=scheduler)))
            for _ in range(3)]
    assert np.array_equal(runs[0], runs[1]) and np.array_equal(runs[0], runs[2])
    assert pipeline._schedulers[scheduler]._step_index is None  # the kept one is copied, never stepped itself


def test_progress_callback_sees_every_step_and_the_latents(pipeline):
    seen = []
    pipeline.generate(_request(["a"], num_images=3), batch_size=2,
                      progress_callback=lambda step, total, latents, first: seen.append((step, total, tuple(latents.shape))))
    assert [s for s, _, _ in seen] == list(range(1, 2 * STEPS + 1))  # two batches
    assert {t for _, t, _ in seen} == {2 * STEPS}
    latent = SIZE // pipeline.vae_scale_factor
    assert seen[0][2] == (2, 4, latent, latent) and seen[-1][2] == (1, 4, latent, latent)


def test_cli_writes_pngs_whose_parameters_parse_back(tiny_pipeline_dir, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["a red circle", "a blue square", "--model", str(tiny_pipeline_dir), "--num-images", "2", "--seed", "42",
            "--steps", "2", "--guidance", "5", "--scheduler", "euler-a", "--width", "32", "--height", "48",
            "--negative-prompt", "blurry, dark", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "seed 42" in printed
    pngs = sorted(out.glob("0*.png"))
    grids = list(out.glob("grid-*.png"))
    assert len(pngs) == 4 and len(grids) == 1
    assert all(str(p) in printed for p in [*pngs, *grids])
    for index, path in enumerate(pngs):
        image = Image.open(path)
        assert image.size == (32, 48)
        info = parse_infotext(image.text["parameters"])
        assert info.prompt == ("a red circle" if index < 2 else "a blue square")
        assert (info.negative_prompt, info.steps, info.scheduler, info.guidance) == ("blurry, dark", 2, "euler-a", 5.0)
        assert (info.seed, info.width, info.height) == (42 + index, 32, 48)
        assert info.model_name == tiny_pipeline_dir.name and len(info.model_hash) == 10
    assert Image.open(grids[0]).size == (2 * 32, 2 * 48)
    saved = json.loads((out / "latentdiff_config.json").read_text())["config"]
    assert (saved["seed"], saved["width"], saved["height"]) == (42, 32, 48)


def test_cli_random_seed_is_printed_and_saved(tiny_pipeline_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["a", "--model", str(tiny_pipeline_dir), "--steps", "1", "--width", "32", "--height", "32",
                 "--out", str(out)]) == 0
    saved = json.loads((out / "latentdiff_config.json").read_text())["config"]["seed"]
    assert f"seed {saved}" in capsys.readouterr().out
    (png,) = out.glob("0*.png")
    assert parse_infotext(Image.open(png).text["parameters"]).seed == saved
    # the printed seed, passed back with --seed, gives the same picture
    assert main(["a", "--model", str(tiny_pipeline_dir), "--steps", "1", "--width", "32", "--height", "32",
                 "--seed", str(saved), "--out", str(tmp_path / "again")]) == 0
    (again,) = (tmp_path / "again").glob("0*.png")
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(png)))


def test_cli_seeds_past_the_largest_wrap_to_zero_and_say_so(tiny_pipeline_dir, tmp_path, capsys):
    assert main(["a", "--model", str(tiny_pipeline_dir), "--steps", "1", "--width", "32", "--height", "32",
                 "--seed", "4294967295", "--num-images", "2", "--out", str(tmp_path / "out")]) == 0
    assert "(images use 4294967295..0)" in capsys.readouterr().out
    assert sorted(p.name.split("-", 1)[1] for p in (tmp_path / "out").glob("0*.png")) == ["0.png", "4294967295.png"]


def _broken_copy(src, tmp_path, remove):
    copy = shutil.copytree(src, tmp_path / "broken")
    shutil.rmtree(copy / remove) if (copy / remove).is_dir() else (copy / remove).unlink()
    return copy


@pytest.mark.parametrize("case, argv_extra, expected", [
    ("width not a multiple", ["--width", "36"], "--width must be a positive multiple of 8"),
    ("zero steps", ["--steps", "0"], "--steps must be between 1 and 1000"),
    ("absurd steps", ["--steps", "100000"], "--steps must be between 1 and 1000"),
    ("unknown scheduler", ["--scheduler", "k_euler"], "choose one of: ddpm, ddim, euler, euler-a, heun"),
    ("negative guidance", ["--guidance", "-1"], "--guidance must be"),
    ("zero images", ["--num-images", "0"], "--num-images must be between 1"),
])
def test_bad_settings_fail_in_one_sentence(tiny_pipeline_dir, tmp_path, capsys, case, argv_extra, expected):
    code = main(["a red circle", "--model", str(tiny_pipeline_dir), "--out", str(tmp_path / "o"), *argv_extra])
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not list((tmp_path / "o").glob("*.png")) if (tmp_path / "o").exists() else True


def test_bad_models_fail_in_one_sentence(tiny_pipeline_dir, tmp_path, capsys, monkeypatch):
    import latentdiff.model_source as model_source

    cases = {
        "vae/": ["a", "--model", str(_broken_copy(tiny_pipeline_dir, tmp_path / "a", "vae"))],
        "tokenizer/": ["a", "--model", str(_broken_copy(tiny_pipeline_dir, tmp_path / "b", "tokenizer"))],
        "unet/ weights": ["a", "--model",
                          str(_broken_copy(tiny_pipeline_dir, tmp_path / "c", "unet/diffusion_pytorch_model.safetensors"))],
        "model_index.json": ["a", "--model", str(_broken_copy(tiny_pipeline_dir, tmp_path / "d", "model_index.json"))],
        "neither an existing folder": ["a", "--model", str(tmp_path / "does-not-exist")],
        "No prompt given": ["--model", str(tiny_pipeline_dir)],
    }
    for expected, argv in cases.items():
        assert main(argv) == 2, expected
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1

    pickled = shutil.copytree(tiny_pipeline_dir, tmp_path / "pickled")
    (pickled / "unet" / "diffusion_pytorch_model.safetensors").rename(pickled / "unet" / "diffusion_pytorch_model.bin")
    assert main(["a", "--model", str(pickled)]) == 2
    assert "pickled weights" in capsys.readouterr().err

    monkeypatch.setattr(model_source, "DEFAULT_MODEL_DIR", tmp_path / "no-default")
    assert main(["a"]) == 2
    assert "has no bundled default model" in capsys.readouterr().err


def test_a_weight_missing_from_the_text_encoder_is_reported_as_diffusers_would(tiny_pipeline_dir, tmp_path):
    """transformers fills a tensor missing from a checkpoint with fresh random values and says so in a load report;
    loading without progress bars must not hide that report (nothing else tells the user the model is broken)."""
    from safetensors.torch import load_file, save_file

    broken = shutil.copytree(tiny_pipeline_dir, tmp_path / "broken")
    weights_file = next((broken / "text_encoder").glob("*.safetensors"))
    tensors = load_file(weights_file)
    missing = next(name for name in tensors if name.endswith("final_layer_norm.bias"))
    del tensors[missing]
    save_file(tensors, weights_file, metadata={"format": "pt"})

    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    transformers_logger = logging.getLogger("transformers")
    transformers_logger.addHandler(handler)
    try:
        TextToImage.load(str(broken), "cpu", backend="torch")
    finally:
        transformers_logger.removeHandler(handler)
    assert any("final_layer_norm.bias" in record.getMessage() and "MISSING" in record.getMessage() for record in records)


def test_bundled_default_is_used_without_model(tiny_pipeline_dir, monkeypatch):
    import latentdiff.model_source as model_source

    monkeypatch.setattr(model_source, "DEFAULT_MODEL_DIR", tiny_pipeline_dir)
    assert TextToImage.load(None, "cpu").source.path == tiny_pipeline_dir.resolve()


def test_hub_id_loads_through_the_local_hub_cache(tiny_pipeline_dir, tmp_path, monkeypatch):
    """No network here: put the folder where huggingface_hub caches `local/tiny`, go offline, load it."""
    import huggingface_hub.constants as hub_constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--local--tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(tiny_pipeline_dir, repo / "snapshots" / commit)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)

    hub = TextToImage.load("local/tiny", "cpu")
    assert hub.model_name == "local/tiny"
    (result,) = hub.generate(_request(["a red circle"], steps=1))
    assert result.info.model_name == "local/tiny"
    with pytest.raises(UserError, match="Could not get 'local/missing'"):
        TextToImage.load("local/missing", "cpu")


# ---------------------------------------------------------------- tiny sizes

SMALL_SIDES = (8, 16, 24, 32)  # 8 px is a 2x2 latent, which the U-Net halves to 1x1


@pytest.mark.parametrize("model", ["tiny", "bundled"])
def test_every_accepted_small_size_generates_at_any_guidance(tiny_pipeline_dir, model):
    """Guidance <= 1 denoises one image at a time (no unconditional copy): a size the pipeline accepts must
    work then too, and a size it refuses must be one that plain diffusers cannot make either."""
    from diffusers import StableDiffusionPipeline

    pipe = TextToImage.load(str(tiny_pipeline_dir) if model == "tiny" else None, "cpu")
    made, refused = [], []
    for side in SMALL_SIDES:
        for guidance in (1.0, 5.0):
            request = _request(["red"], steps=1, guidance=guidance, width=side, height=side)
            try:
                pipe.check_request(request)
            except UserError as err:
                assert f"at least {pipe.min_size} pixels" in str(err) and "\n" not in str(err)
                refused.append(side)
                continue
            (result,) = pipe.generate(request)
            assert result.image.size == (side, side)
            made.append(side)
    assert refused == [8, 8] and made == [16, 16, 24, 24, 32, 32]
    # the refusal is not arbitrary: diffusers itself cannot make one 8x8 image with this model
    plain = StableDiffusionPipeline.from_pretrained(pipe.source.path)
    plain.set_progress_bar_config(disable=True)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        plain("red", num_inference_steps=1, guidance_scale=1.0, width=8, height=8)


@pytest.mark.slow  # 6 s: loads the bundled model
def test_cli_refuses_a_too_small_size_in_one_sentence_and_makes_the_smallest(tmp_path, capsys):
    """The command from the issue, on the bundled default model."""
    argv = ["red", "--guidance", "1", "--steps", "1", "--seed", "1"]
    assert main([*argv, "--width", "8", "--height", "8", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--width must be at least 16 pixels" in err and "try --width 16" in err
    assert not (tmp_path / "a").exists() or not list((tmp_path / "a").glob("*.png"))
    assert main([*argv, "--width", "16", "--height", "16", "--out", str(tmp_path / "b")]) == 0
    (png,) = (tmp_path / "b").glob("0*.png")
    assert Image.open(png).size == (16, 16)


# ---------------------------------------------------------------------------------------- img2img
def _init_picture(path=None) -> Image.Image:
    """A picture with structure (a bright square on dark) that img2img at low strength should keep."""
    picture = Image.new("RGB", (48, 48), (20, 20, 60))
    picture.paste((240, 200, 40), (8, 8, 40, 40))
    if path is not None:
        picture.save(path)
    return picture


def test_img2img_is_diffusers_own_img2img_with_our_seeds(pipeline, tiny_pipeline_dir):
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionImg2ImgPipeline

    picture = _init_picture()
    ours = pipeline.generate(_request(["a red circle"], num_images=2, steps=4, scheduler="euler-a",
                                      init_image=picture, strength=0.5), batch_size=2)
    plain = StableDiffusionImg2ImgPipeline.from_pretrained(tiny_pipeline_dir)
    plain.scheduler = EulerAncestralDiscreteScheduler.from_config(plain.scheduler.config)
    plain.set_progress_bar_config(disable=True)
    resized = picture.resize((SIZE, SIZE), Image.Resampling.LANCZOS)
    theirs = plain(prompt=["a red circle"] * 2, image=[resized] * 2, strength=0.5, num_inference_steps=4,
                   guidance_scale=7.5, generator=[torch.Generator("cpu").manual_seed(s) for s in (7, 8)]).images
    for a, b in zip(_pixels(ours), theirs):
        assert a.shape == (SIZE, SIZE, 3)
        assert np.abs(a - np.asarray(b).astype(np.int16)).max() <= 2
    assert "Denoising strength: 0.5" in ours[0].infotext
    assert parse_infotext(ours[0].infotext).denoising_strength == 0.5
    # the same pipeline still makes text-to-image images afterwards, without the strength
    assert "Denoising strength" not in pipeline.generate(_request(["a red circle"]))[0].infotext


def test_img2img_strength_sets_the_steps_run(pipeline):
    # (the tiny random VAE cannot reconstruct a picture, so how much of it stays is not measurable here)
    picture = _init_picture()
    low, high = (pipeline.generate(_request(["a red circle"], steps=10, init_image=picture, strength=s))[0]
                 for s in (0.3, 0.9))
    assert np.abs(_pixels([low])[0] - _pixels([high])[0]).max() > 0
    steps_seen = []
    pipeline.generate(_request(["a red circle"], steps=10, init_image=picture, strength=0.3),
                      progress_callback=lambda step, total, latents, first: steps_seen.append((step, total)))
    assert steps_seen[-1] == (3, 3)  # diffusers' img2img runs int(10 * 0.3) steps, and the bar says so


def test_cli_init_image_writes_img2img_pngs(tiny_pipeline_dir, tmp_path, capsys):
    _init_picture(tmp_path / "start.png")
    status = main(["a red circle", "--model", str(tiny_pipeline_dir), "--out", str(tmp_path / "out"), "--seed", "3",
                   "--steps", "4", "--width", str(SIZE), "--height", str(SIZE),
                   "--init-image", str(tmp_path / "start.png"), "--strength", "0.5"])
    assert status == 0
    out = capsys.readouterr().out
    assert "from " in out and "at strength 0.5" in out
    png = Image.open(tmp_path / "out" / "00000-3.png")
    assert png.size == (SIZE, SIZE)
    assert "Denoising strength: 0.5" in png.info["parameters"]


@pytest.mark.parametrize("argv_extra, expected", [
    (["--init-image", "missing.png"], "--init-image missing.png does not exist"),
    (["--init-image", "{bad}", "--strength", "0.5"], "cannot be read"),
    (["--init-image", "{good}", "--strength", "0"], "--strength must be above 0 and at most 1"),
    (["--init-image", "{good}", "--strength", "0.2", "--steps", "3"], "leaves no denoising step"),
])
def test_init_image_mistakes_fail_in_one_sentence(tiny_pipeline_dir, tmp_path, capsys, argv_extra, expected):
    _init_picture(tmp_path / "good.png")
    (tmp_path / "bad.png").write_text("not a picture")
    argv_extra = [a.format(good=tmp_path / "good.png", bad=tmp_path / "bad.png") for a in argv_extra]
    status = main(["a red circle", "--model", str(tiny_pipeline_dir), "--out", str(tmp_path / "out"), *argv_extra])
    err = capsys.readouterr().err
    assert status == 2 and expected in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------- model names
def test_a_trained_pipeline_is_called_by_its_run_not_pipeline(tiny_pipeline_dir, tmp_path):
    from latentdiff.model_source import write_model_name

    run_pipeline = tmp_path / "runs" / "shapes" / "pipeline"
    shutil.copytree(tiny_pipeline_dir, run_pipeline)
    write_model_name(run_pipeline)  # what train/train-unet's export does
    moved = tmp_path / "somewhere" / "pipeline"
    shutil.move(run_pipeline, moved)  # the name travels with the folder
    result = TextToImage.load(str(moved), "cpu").generate(_request(["a red circle"]))[0]
    assert parse_infotext(result.infotext).model_name == "shapes"


def test_a_model_draws_at_its_own_guidance_unless_another_is_asked(tiny_pipeline_dir, tmp_path):
    """"guidance" in latentdiff_model.json (the bundled models': the best scale of a guidance sweep) is what
    generate, evaluate and the server use when none is asked; an asked scale wins; a malformed one is ignored."""
    from latentdiff.model_source import MODEL_INFO
    from latentdiff.server.engine import PipelineEngine

    model = shutil.copytree(tiny_pipeline_dir, tmp_path / "model")
    (model / MODEL_INFO).write_text(json.dumps({"name": "mine", "guidance": 3}))
    loaded = TextToImage.load(str(model), "cpu")
    assert loaded.default_guidance == 3.0 and PipelineEngine(loaded).defaults.guidance == 3.0
    own = loaded.generate(_request(["a red circle"], seed=1))[0]
    asked = {scale: loaded.generate(_request(["a red circle"], seed=1, guidance=scale))[0] for scale in (3, 7.5)}
    assert parse_infotext(own.infotext).guidance == 3.0
    assert np.array_equal(np.asarray(own.image), np.asarray(asked[3].image))
    assert parse_infotext(asked[7.5].infotext).guidance == 7.5
    assert not np.array_equal(np.asarray(own.image), np.asarray(asked[7.5].image))
    assert TextToImage.load(str(tiny_pipeline_dir), "cpu").default_guidance == 7.5  # none stored: diffusers' 7.5
    for malformed in ("high", True, -1, 1e9):
        (model / MODEL_INFO).write_text(json.dumps({"name": "mine", "guidance": malformed}))
        assert TextToImage.load(str(model), "cpu").default_guidance == 7.5
