"""The fashion-mnist source: official splits kept, validation carved from train, captions name the label."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from latentdiff.config import PrepareDataConfig
from latentdiff.data.prepared import load_image_array, open_prepared
from latentdiff.data.sources import fashion_mnist
from latentdiff.errors import UserError
from latentdiff.stages.prepare_data import run

LABEL_WORDS = ("t-shirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">i", d) for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def tiny_package(tmp_path, monkeypatch):
    """The package's four files, with 48 train and 10 test images of known labels."""
    root = tmp_path / "fashion-mnist"
    root.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 48), ("test", 10)):
        images_name, labels_name = fashion_mnist.FILES[split]
        write_idx(root / images_name, rng.integers(0, 256, size=(n, 28, 28)))
        write_idx(root / labels_name, np.arange(n) % 10)
    monkeypatch.setattr(fashion_mnist, "DATA_DIR", str(root))
    return root


def test_splits_captions_and_labels(tiny_package, tmp_path):
    out = tmp_path / "out"
    manifest = run(PrepareDataConfig(source="fashion-mnist", out=str(out)))
    assert manifest["counts"]["test"] == 10  # the official test split, untouched
    assert manifest["counts"]["train"] + manifest["counts"]["validation"] == 48
    assert manifest["counts"]["validation"] >= 1
    dataset = open_prepared(out)
    for split in ("train", "validation", "test"):
        for record in dataset.records(split):
            assert record.id.startswith("fashion-mnist-test-" if split == "test" else "fashion-mnist-train-")
            label = record.attributes["label"]
            assert label == int(record.id[-5:]) % 10
            assert len(record.captions) == fashion_mnist.CAPTIONS_PER_IMAGE == len(set(record.captions))
            assert all(LABEL_WORDS[label] in caption for caption in record.captions)
            assert load_image_array(record.path).shape == (64, 64, 3)  # upscaled from 28


def test_validation_and_captions_are_deterministic():
    keys = [f"fashion-mnist-train-{i:05d}" for i in range(6000)]
    carved = [k for k in keys if fashion_mnist.is_validation(k)]
    assert 350 < len(carved) < 650  # about 1 in 12
    assert carved == [k for k in keys if fashion_mnist.is_validation(k)]
    assert fashion_mnist.captions_for("x", 7) == fashion_mnist.captions_for("x", 7)


def test_missing_or_broken_package_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DATA_DIR", str(tmp_path / "absent"))
    with pytest.raises(UserError, match="apt-get install -y dataset-fashion-mnist"):
        fashion_mnist.read()
    root = tmp_path / "broken"
    root.mkdir()
    for name in (*fashion_mnist.FILES["train"], *fashion_mnist.FILES["test"]):
        with gzip.open(root / name, "wb") as fh:
            fh.write(b"not an idx file")
    monkeypatch.setattr(fashion_mnist, "DATA_DIR", str(root))
    with pytest.raises(UserError, match="reinstall"):
        fashion_mnist.read()


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").exists(),
                    reason="dataset-fashion-mnist is not installed (run `make setup`)")
def test_real_package(tmp_path):
    out = tmp_path / "fm"
    result = fashion_mnist.read()
    assert result.num_items == 70_000
    run(PrepareDataConfig(source="fashion-mnist", out=str(out), max_images=20))
    records = open_prepared(out).records("train")
    assert records
    for record in records:
        label = record.attributes["label"]
        assert all(LABEL_WORDS[label] in caption for caption in record.captions)
        pixels = load_image_array(record.path)
        assert pixels[0, 0].max() < 30 and pixels.max() > 150  # light garment on a black background
