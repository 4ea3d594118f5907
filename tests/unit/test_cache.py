"""Latent and text-embedding caches: built once, reused by a second run, rebuilt when what made them changes."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.unet_components import write_unet_inputs
from latentdiff.data.cache import EMPTY_PROMPT_ROW, cache_key, encode_prompts, load_or_build
from latentdiff.data.prepared import open_prepared


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return write_unet_inputs(tmp_path_factory.mktemp("cache_inputs"), num_train=12, num_validation=4)


def _frozen(paths):
    from diffusers import AutoencoderKL

    from latentdiff.stages.train_unet import load_text_encoder

    text_encoder, tokenizer = load_text_encoder(paths["clip"])
    return AutoencoderKL.from_pretrained(paths["vae"]).eval(), text_encoder.eval(), tokenizer


def test_second_run_reuses_the_cache(inputs, tmp_path):
    vae, text_encoder, tokenizer = _frozen(inputs)
    dataset = open_prepared(inputs["data"])
    first = load_or_build(vae, text_encoder, tokenizer, dataset, "train", tmp_path)
    assert first.built
    mtime = first.path.stat().st_mtime_ns
    # a "second run": fresh objects loaded from the same folders
    vae2, text_encoder2, tokenizer2 = _frozen(inputs)
    second = load_or_build(vae2, text_encoder2, tokenizer2, open_prepared(inputs["data"]), "train", tmp_path)
    assert not second.built and second.path == first.path and second.path.stat().st_mtime_ns == mtime
    assert torch.equal(first.latent_mean, second.latent_mean)
    assert len(list(tmp_path.glob("*.safetensors"))) == 1

    # contents: one posterior per image, every caption of every image, the empty prompt in row 0
    n = len(dataset.records("train"))
    assert first.latent_mean.shape == (n, 4, 16, 16) and first.latent_std.shape == (n, 4, 16, 16)
    # image 3's posterior, by hand from its file: pixels in [-1, 1] through the VAE's encoder
    pixels = np.asarray(Image.open(dataset.records("train")[3].path).convert("RGB"), dtype=np.float32) / 127.5 - 1
    posterior = vae.encode(torch.from_numpy(pixels).permute(2, 0, 1)[None]).latent_dist  # (1, 4, 16, 16)
    torch.testing.assert_close(first.latent_mean[3], posterior.mean[0].detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(first.latent_std[3], posterior.std[0].detach(), atol=1e-5, rtol=1e-5)
    assert first.caption_index.shape == (n, 2) and torch.all(first.caption_index > EMPTY_PROMPT_ROW)
    captions = {c for r in dataset.records("train") for c in r.captions}
    assert first.text_embeddings.shape[0] == len(captions) + 1
    empty = encode_prompts(text_encoder, tokenizer, [""])[0]
    torch.testing.assert_close(first.text_embeddings[EMPTY_PROMPT_ROW].float(), empty, atol=1e-2, rtol=1e-2)
    record = dataset.records("train")[3]
    row = int(first.caption_index[3, 1])
    torch.testing.assert_close(first.text_embeddings[row].float(),
                               encode_prompts(text_encoder, tokenizer, [record.captions[1]])[0], atol=1e-2, rtol=1e-2)


def test_key_changes_when_the_vae_changes_not_when_it_moves(inputs, tmp_path):
    vae, text_encoder, tokenizer = _frozen(inputs)
    dataset = open_prepared(inputs["data"])
    key = cache_key(vae, text_encoder, tokenizer, dataset, "train")

    from diffusers import AutoencoderKL

    moved = tmp_path / "vae_copy"
    shutil.copytree(inputs["vae"], moved)
    assert cache_key(AutoencoderKL.from_pretrained(moved), text_encoder, tokenizer, dataset, "train") == key
    assert cache_key(vae, text_encoder, tokenizer, dataset, "validation") != key

    first = load_or_build(vae, text_encoder, tokenizer, dataset, "train", tmp_path / "cache")
    with torch.no_grad():
        next(vae.encoder.parameters()).add_(0.01)  # a "retrained" VAE
    changed_key = cache_key(vae, text_encoder, tokenizer, dataset, "train")
    assert changed_key != key
    second = load_or_build(vae, text_encoder, tokenizer, dataset, "train", tmp_path / "cache")
    assert second.built and second.path != first.path
    assert not torch.equal(first.latent_mean, second.latent_mean)


def test_a_killed_build_resumes_from_its_last_finished_chunk(inputs, tmp_path, monkeypatch, capsys):
    from latentdiff.data import cache

    vae, text_encoder, tokenizer = _frozen(inputs)
    dataset = open_prepared(inputs["data"])
    monkeypatch.setattr(cache, "ENCODE_BATCH_SIZE", 2)
    monkeypatch.setattr(cache, "CHUNK_BATCHES", 2)  # chunks of 4 images: the 12 images are 3 chunks
    whole = load_or_build(vae, text_encoder, tokenizer, dataset, "train", tmp_path / "whole")

    encoded: list[int] = []  # images per encode call of the build under test
    real_encode = cache.encode_latents

    def encode_then_die(vae, pixels):
        if len(encoded) == 3:  # the 2nd batch of the 2nd chunk: chunk 1 is on disk, chunk 2 is not
            raise KeyboardInterrupt
        encoded.append(len(pixels))
        return real_encode(vae, pixels)

    monkeypatch.setattr(cache, "encode_latents", encode_then_die)
    with pytest.raises(KeyboardInterrupt):
        load_or_build(vae, text_encoder, tokenizer, dataset, "train", tmp_path / "killed")
    assert not list((tmp_path / "killed").glob("*.safetensors"))  # no half-written cache file

    encoded.clear()
    monkeypatch.setattr(cache, "encode_latents", lambda vae, pixels: (encoded.append(len(pixels)), real_encode(vae, pixels))[1])
    resumed = load_or_build(vae, text_encoder, tokenizer, dataset, "train", tmp_path / "killed")
    assert sum(encoded) == 12 - 4  # only the images after the finished chunk were encoded again
    assert "resuming an interrupted build, 4 of" in capsys.readouterr().out
    for name in ("latent_mean", "latent_std", "caption_index", "text_embeddings"):
        assert torch.equal(getattr(resumed, name), getattr(whole, name)), name  # as if never interrupted
    # the chunks are cleaned up; the build's lock file stays (removing it could race a run opening it)
    assert sorted(p.name for p in (tmp_path / "killed").iterdir()) == sorted(
        [resumed.path.name, f".{resumed.path.stem}.lock"])


def test_two_runs_started_at_once_build_the_cache_once(inputs, tmp_path, monkeypatch, capsys):
    """Two trainings on the same data started together: one builds, the other waits for it and reads the
    same file. Without the lock both built, and the first to finish deleted the chunks the second was reading
    (FileNotFoundError in the second run)."""
    import threading

    from latentdiff.data import cache

    vae, text_encoder, tokenizer = _frozen(inputs)
    dataset = open_prepared(inputs["data"])
    monkeypatch.setattr(cache, "ENCODE_BATCH_SIZE", 2)
    monkeypatch.setattr(cache, "CHUNK_BATCHES", 2)
    encoders: set[str] = set()  # the threads that encoded images
    second_started = threading.Event()
    real_encode = cache.encode_latents

    def slow_encode(vae, pixels):
        encoders.add(threading.current_thread().name)
        if threading.current_thread().name == "first":
            second_started.wait(timeout=2)  # keep the first build running while the second one starts
        else:
            second_started.set()
        return real_encode(vae, pixels)

    monkeypatch.setattr(cache, "encode_latents", slow_encode)
    results, errors = {}, []

    def run():
        try:
            results[threading.current_thread().name] = load_or_build(vae, text_encoder, tokenizer, dataset, "train",
                                                                     tmp_path)
        except Exception as err:  # noqa: BLE001 - reported by the assertion below
            errors.append(err)

    first = threading.Thread(target=run, name="first")
    first.start()
    while not encoders:  # the first build is under way
        first.join(timeout=0.01)
    second = threading.Thread(target=run, name="second")
    second.start()
    first.join()
    second.join()
    assert not errors, errors
    assert encoders == {"first"}  # the second run encoded nothing
    assert results["first"].built and not results["second"].built
    for name in ("latent_mean", "latent_std", "caption_index", "text_embeddings"):
        assert torch.equal(getattr(results["first"], name), getattr(results["second"], name)), name
    assert "waiting for another run that is building the latent cache" in capsys.readouterr().out


def test_training_encodes_prompts_exactly_as_the_diffusers_pipeline_does(tiny_pipeline_dir):
    """The U-Net is trained on `encode_prompts`' embeddings and generates from `pipe.encode_prompt`'s: any
    difference (padding, truncation, an attention mask, which hidden state) is a train/test mismatch."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_pipeline_dir)
    prompts = ["a red circle", "", "a blue square on a white background " * 12]  # short, empty, past the limit
    # together (as the cache encodes captions) and one by one (a batch of short captions only, as well)
    for batch in (prompts, *([prompt] for prompt in prompts)):
        with torch.no_grad():
            ours = encode_prompts(pipe.text_encoder, pipe.tokenizer, batch)
            theirs, _ = pipe.encode_prompt(batch, torch.device("cpu"), 1, False)
        assert ours.shape == theirs.shape == (len(batch), pipe.tokenizer.model_max_length,
                                              pipe.text_encoder.config.hidden_size)
        assert torch.equal(ours, theirs), batch
