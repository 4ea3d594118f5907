"""`latentdiff train-unet --train-text-encoder`: the text encoder trains with the U-Net on the denoising loss, the
exported pipeline carries the trained one, and the cached path feeds it the same captions the frozen path
encodes; a run resumes bit-identically; the text encoder may take its own learning rate."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from helpers.unet_components import tiny_unet_argv, write_unet_inputs
from latentdiff.stages import train_unet

TEXT_ENCODER_WEIGHTS = "text_encoder/model.safetensors"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return write_unet_inputs(tmp_path_factory.mktemp("tte_inputs"))


def _task(inputs, tmp_path, **overrides):
    from latentdiff.config import UnetTrainConfig
    from latentdiff.training.diffusion_task import DiffusionTask

    cfg = UnetTrainConfig(data=str(inputs["data"]), clip=str(inputs["clip"]), vae=str(inputs["vae"]),
                          out=str(tmp_path / "o"), preset="tiny", cache_dir=str(tmp_path / "c"), **overrides)
    return DiffusionTask(cfg, *train_unet.build_components(cfg))


def _loss(task, generator_seed: int = 3):
    items = task.train_dataset()
    batch = task.collate([items[i] for i in range(8)])
    return task.loss(task.trainable_module(), batch, torch.Generator().manual_seed(generator_seed))[0]


@pytest.mark.parametrize("cache", [True, False])
def test_the_trained_encoder_sees_the_captions_the_frozen_one_encodes(inputs, tmp_path, cache):
    """Before any step the trained text encoder is the frozen one, so with the same draws (caption choice and
    dropout included) the token ids it is given (gathered for the cache's caption rows, or tokenized from the
    strings without a cache) must encode to the frozen path's embeddings, and the loss must be the same."""
    frozen_task = _task(inputs, tmp_path, cache=cache, caption_dropout=0.5)
    trained_task = _task(inputs, tmp_path, cache=cache, caption_dropout=0.5, train_text_encoder=True)
    conditions = []
    with torch.no_grad():
        for task in (frozen_task, trained_task):
            items = task.train_dataset()
            batch = task.collate([items[i] for i in range(8)])
            task._to(torch.device("cpu"))
            conditions.append(task._inputs(batch, torch.Generator().manual_seed(3))[1])
        frozen, ids = conditions
        assert ids.dtype == torch.int64 and ids.shape == frozen.shape[:2]
        encoded = trained_task.trainable_module().encode(ids)
        losses = [float(_loss(task)) for task in (frozen_task, trained_task)]
    distinct = (frozen[:, None] - frozen[None]).abs().amax(dim=(2, 3))  # (B, B): how far apart the captions encode
    tolerance = 2e-3 * frozen.abs().max()  # the cache keeps float16 embeddings
    assert distinct.max() > 10 * tolerance  # a wrong caption would be seen
    torch.testing.assert_close(encoded, frozen, atol=float(tolerance), rtol=0)
    assert losses[1] == pytest.approx(losses[0], rel=1e-3)


def test_the_loss_reaches_the_text_encoder_only_when_it_trains(inputs, tmp_path):
    for train_text_encoder in (False, True):
        task = _task(inputs, tmp_path, train_text_encoder=train_text_encoder, caption_dropout=0.0)
        _loss(task).backward()
        grads = [p.grad for p in task.text_encoder.parameters()]
        if train_text_encoder:
            assert any(g is not None and g.abs().sum() > 0 for g in grads)
        else:
            assert all(g is None for g in grads)
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in task.unet.parameters())


def test_the_text_encoder_takes_its_own_learning_rate(inputs, tmp_path):
    from latentdiff.training.optim import make_optimizer

    task = _task(inputs, tmp_path, train_text_encoder=True, text_encoder_lr=1e-5, lr=1e-3)
    module = task.trainable_module()
    optimizer = make_optimizer(module, task.cfg)
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert {lr_of[id(p)] for p in module.text_encoder.parameters()} == {1e-5}
    assert {lr_of[id(p)] for p in module.unet.parameters()} == {1e-3}
    # without an override the groups are the two of every run: decayed, then not (older checkpoints' order)
    plain = make_optimizer(task.unet, task.cfg)
    assert [g["weight_decay"] > 0 for g in plain.param_groups] == [True, False]


@pytest.mark.slow  # ~10 s: three short runs and a generation
def test_the_pipeline_exports_the_trained_text_encoder_and_draws_with_it(inputs, tmp_path, caplog):
    from diffusers import StableDiffusionPipeline

    runs = {}
    for name, extra in (("frozen", []), ("trained", ["--train-text-encoder"])):
        runs[name] = tmp_path / name
        argv = tiny_unet_argv(inputs, runs[name], "--lr", "1e-3", "--ema-decay", "0", "--cache-dir",
                              str(tmp_path / "cache"), *extra)
        assert train_unet.main(argv) == 0
    frozen, trained = (load_file(runs[name] / TEXT_ENCODER_WEIGHTS) for name in ("frozen", "trained"))
    assert frozen.keys() == trained.keys()
    assert not all(torch.equal(frozen[k], trained[k]) for k in frozen)  # the frozen run's is the CLIP's own

    pipe = StableDiffusionPipeline.from_pretrained(runs["trained"])
    pipe.set_progress_bar_config(disable=True)
    loaded = pipe.text_encoder.state_dict()
    assert all(torch.equal(loaded[k], trained[k]) for k in trained)
    images = [np.asarray(pipe(prompt, num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0])
              for prompt in ("a red square", "a blue circle")]
    assert images[0].shape == (64, 64, 3) and not np.array_equal(images[0], images[1])

    # continued from its pipeline: `--clip` it, so the trained encoder conditions the next run; another --clip
    # (the original CLIP) is a slip that would drop the trained encoder, so it is named
    for clip, warned in ((runs["trained"], False), (inputs["clip"], True)):
        caplog.clear()
        more = tmp_path / f"more-{warned}"
        assert train_unet.main(tiny_unet_argv({**inputs, "clip": clip}, more, "--init", str(runs["trained"]),
                                              "--cache-dir", str(tmp_path / "cache"))) == 0
        assert ("--train-text-encoder" in caplog.text) is warned


@pytest.mark.slow  # ~6 s: trains, then resumes
def test_resume_with_the_text_encoder_is_bit_identical(inputs, tmp_path):
    out = tmp_path / "resume"
    argv = tiny_unet_argv(inputs, out, "--train-text-encoder", "--checkpoint-every", "2", "--keep-checkpoints", "3",
                          "--num-validation-prompts", "0", "--cache-dir", str(tmp_path / "cache"))
    assert train_unet.main(argv) == 0
    full = {part: load_file(out / path) for part, path in (("unet", "unet/diffusion_pytorch_model.safetensors"),
                                                          ("text", TEXT_ENCODER_WEIGHTS))}
    shutil.rmtree(out / "training_state" / "step-000004")  # as if killed after the checkpoint of step 2
    shutil.rmtree(out / "unet")
    shutil.rmtree(out / "text_encoder")
    (out / "latentdiff_complete.json").unlink()
    assert train_unet.main(argv) == 0
    for part, weights in full.items():
        resumed = load_file(out / ("unet/diffusion_pytorch_model.safetensors" if part == "unet" else TEXT_ENCODER_WEIGHTS))
        assert all(torch.equal(weights[k], resumed[k]) for k in weights), part


def test_a_sharded_cache_is_refused_in_one_sentence(inputs, tmp_path, capsys):
    from latentdiff.data.shards import pack_webdataset

    shards = tmp_path / "shards"
    shutil.copytree(inputs["data"], shards)
    pack_webdataset(shards, samples_per_shard=10)
    capsys.readouterr()
    assert train_unet.main(tiny_unet_argv({**inputs, "data": shards}, tmp_path / "o", "--train-text-encoder")) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("latentdiff train-unet: error:")]
    assert len(err) == 1 and "--no-cache" in err[0]
