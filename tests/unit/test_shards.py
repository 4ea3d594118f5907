"""The webdataset layout (`prepare-data --format webdataset`): tar shards of a fixed size with an index,
the same images and captions as the imagefolder layout, and the training data order.s split of every epoch
over processes and DataLoader workers (each sample to exactly one (rank, worker)), resumable mid-epoch."""

from __future__ import annotations

import json
import tarfile
from collections import Counter

import pytest
import torch

from helpers.clip_data import write_tiny_clip_dataset
from latentdiff.data.prepared import ImageCaptionDataset, load_image_array, open_prepared
from latentdiff.data.shards import pack_webdataset
from latentdiff.errors import UserError
from latentdiff.stages import prepare_data
from latentdiff.training.data_order import BatchStream, StreamPosition


def _prepare(tmp_path, name, *extra):
    out = tmp_path / name
    prepare_data.main(["shapes", "--num-images", "50", "--image-size", "32", "--out", str(out), *extra])
    return out


def test_webdataset_layout_has_fixed_size_shards_an_index_and_the_same_samples(tmp_path):
    folder = _prepare(tmp_path, "folder")
    shards = _prepare(tmp_path, "shards", "--format", "webdataset", "--samples-per-shard", "8")

    manifest = json.loads((shards / "manifest.json").read_text())
    index = json.loads((shards / "index.json").read_text())
    assert manifest["format"] == "webdataset" and index["samples_per_shard"] == 8
    for split, entries in index["splits"].items():
        sizes = [entry["num_samples"] for entry in entries]
        assert all(n == 8 for n in sizes[:-1]) and 1 <= sizes[-1] <= 8
        assert sum(sizes) == manifest["counts"][split]
        assert not list((shards / split).glob("*.png"))  # no small files left
        with tarfile.open(shards / entries[0]["url"]) as tar:  # plain tars: KEY.png + KEY.json per sample
            names = tar.getnames()
        assert names[:2] == ["000000.json", "000000.png"] or names[:2] == ["000000.png", "000000.json"]
    for split in ("train", "validation", "test"):
        plain, packed = open_prepared(folder).records(split), open_prepared(shards).records(split)
        assert [r.captions for r in packed] == [r.captions for r in plain]
        assert [r.attributes for r in packed] == [r.attributes for r in plain]
        for a, b in zip(plain, packed):
            assert (load_image_array(a) == load_image_array(b)).all()


def test_a_truncated_shard_is_one_sentence(tmp_path):
    shards = _prepare(tmp_path, "shards", "--format", "webdataset", "--samples-per-shard", "8")
    shard = shards / "train" / "shard-000000.tar"
    shard.write_bytes(shard.read_bytes()[:1000])
    records = open_prepared(shards).records("train")
    with pytest.raises(UserError, match="shorter than its index"):
        load_image_array(records[7])


class _Traced(torch.utils.data.Dataset):
    """The shard dataset's items, tagged with the DataLoader worker that loaded them."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        item = self.dataset[index]
        info = torch.utils.data.get_worker_info()
        return {"index": item["index"], "worker": -1 if info is None else info.id,
                "pixels_sum": float(item["pixel_values"].sum())}


def _collate(items):
    return items


@pytest.fixture(scope="module")
def shard_dataset(tmp_path_factory):
    root = write_tiny_clip_dataset(tmp_path_factory.mktemp("data") / "data", num_train=48, num_validation=8)
    pack_webdataset(root, samples_per_shard=10)
    return ImageCaptionDataset(open_prepared(root), "train")


def _epoch(dataset, rank, position=None, num_workers=2, world_size=2, batch_size=4):
    stream = BatchStream(_Traced(dataset), _collate, batch_size, seed=3, rank=rank, world_size=world_size,
                         num_workers=num_workers, position=position)
    items = []
    while True:
        items += next(stream)
        if stream.position.batch_in_epoch == stream.num_batches:
            return items


def test_every_sample_goes_to_exactly_one_rank_and_worker_per_epoch(shard_dataset):
    assert len(shard_dataset) == 48  # 2 ranks x 6 batches of 4: nothing dropped
    owners, first = {}, {rank: _epoch(shard_dataset, rank) for rank in (0, 1)}
    for rank in (0, 1):
        for item in first[rank]:
            assert item["index"] not in owners, "a sample was seen twice in one epoch"
            owners[item["index"]] = (rank, item["worker"])
    assert sorted(owners) == list(range(48))
    assert set(Counter(owners.values())) == {(0, 0), (0, 1), (1, 0), (1, 1)}  # every (rank, worker) loads some
    second = {rank: _epoch(shard_dataset, rank, StreamPosition(epoch=1)) for rank in (0, 1)}
    assert sorted(item["index"] for items in second.values() for item in items) == list(range(48))
    assert [i["index"] for i in second[0]] != [i["index"] for i in first[0]]  # a new order each epoch


def test_a_stream_resumed_mid_epoch_continues_at_the_exact_sample(shard_dataset):
    whole = _epoch(shard_dataset, rank=1)
    resumed = _epoch(shard_dataset, rank=1, position=StreamPosition(epoch=0, batch_in_epoch=2))
    assert [(i["index"], i["pixels_sum"]) for i in resumed] == [(i["index"], i["pixels_sum"]) for i in whole[8:]]
