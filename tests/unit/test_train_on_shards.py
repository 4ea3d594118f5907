"""Every training stage reads the webdataset layout: train-clip, train-vae and train-unet (without a cache)
trained on tar shards give weights bit-identical to the same data as an imagefolder; train-unet's cache
of a sharded dataset is one file per shard, read lazily, with the same numbers as the one-file cache."""

from __future__ import annotations

import shutil

import pytest
import torch

from helpers.unet_components import tiny_unet_argv, write_unet_inputs
from latentdiff.data.shards import pack_webdataset
from latentdiff.stages import train_clip, train_unet, train_vae

FAST = ["--max-steps", "3", "--validate-every", "0", "--checkpoint-every", "0", "--seed", "5"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("shard_inputs")
    paths = write_unet_inputs(root, num_train=24, num_validation=8)
    shards = root / "shards"
    shutil.copytree(paths["data"], shards)
    pack_webdataset(shards, samples_per_shard=10)  # train: shards of 10, 10, 4
    return {**paths, "shards": shards}


def _weights(folder):
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*.safetensors"))
            if "training_state" not in path.parts}


@pytest.mark.parametrize("stage, argv", [
    (train_clip, ["--preset", "tiny", "--batch-size", "8"]),
    (train_vae, ["--preset", "tiny", "--batch-size", "4", "--validation-images", "4", "--scaling-images", "8"]),
])
def test_clip_and_vae_train_identically_on_shards(inputs, tmp_path, stage, argv):
    outs = {}
    for layout in ("data", "shards"):
        outs[layout] = tmp_path / layout
        assert stage.main(["--data", str(inputs[layout]), "--out", str(outs[layout]), *argv, *FAST]) == 0
    weights = _weights(outs["data"])
    assert weights and weights == _weights(outs["shards"])


def test_unet_without_cache_trains_identically_on_shards(inputs, tmp_path):
    outs = {}
    for layout in ("data", "shards"):
        outs[layout] = tmp_path / layout
        paths = {**inputs, "data": inputs[layout]}
        assert train_unet.main(tiny_unet_argv(paths, outs[layout], "--no-cache", "--max-steps", "2")) == 0
    assert _weights(outs["data"])["unet/diffusion_pytorch_model.safetensors"] == \
        _weights(outs["shards"])["unet/diffusion_pytorch_model.safetensors"]


def test_unet_cache_of_a_sharded_dataset_is_per_shard_lazy_and_matches_the_one_file_cache(inputs, tmp_path):
    from latentdiff.data.cache import load_or_build
    from latentdiff.data.prepared import open_prepared
    from latentdiff.data.shard_cache import load_or_build_sharded
    from latentdiff.stages.train_unet import load_text_encoder
    from latentdiff.models.vae import load_vae

    text_encoder, tokenizer = load_text_encoder(inputs["clip"])
    vae = load_vae(str(inputs["vae"]))
    whole = load_or_build(vae, text_encoder, tokenizer, open_prepared(inputs["data"]), "train", tmp_path / "one")
    sharded = load_or_build_sharded(vae, text_encoder, tokenizer, open_prepared(inputs["shards"]), "train",
                                    tmp_path / "many")
    assert sharded.built and len(sharded) == len(whole) == 24
    assert len(list((tmp_path / "many").glob("*.shards/shard-*.safetensors"))) == 3
    for i in (0, 9, 10, 23):  # first and last of a shard, first of the next, the last one
        item = sharded[i]
        # encoded in other batches (shards of 10, not one run of 24): equal up to float rounding
        torch.testing.assert_close(item["latent_mean"], whole.latent_mean[i], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(item["latent_std"], whole.latent_std[i], atol=1e-5, rtol=1e-5)
        rows = whole.caption_index[i][whole.caption_index[i] >= 0]
        assert item["num_captions"] == len(rows)
        torch.testing.assert_close(item["caption_embeddings"][:len(rows)], whole.text_embeddings[rows], atol=2e-3, rtol=0)
    again = load_or_build_sharded(vae, text_encoder, tokenizer, open_prepared(inputs["shards"]), "train",
                                  tmp_path / "many")
    assert not again.built  # reused, not encoded again

    out = tmp_path / "pipeline"
    argv = tiny_unet_argv({**inputs, "data": inputs["shards"]}, out, "--cache-dir", str(tmp_path / "many"),
                          "--num-workers", "1")
    assert train_unet.main(argv) == 0
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").exists()
