"""`fashion-mnist`: the 70,000 Fashion-MNIST product photos (28 x 28 grayscale, light garment on a black
background) from the Debian package dataset-fashion-mnist, with templated captions from the 10 labels.

The official train (60,000) / test (10,000) split is kept; validation is carved from train by a hash
of each image's key (about 1 in 12), so it is the same on every machine. The writer upscales 28 -> N
with Lanczos (`latentdiff.data.images.RESAMPLE`), the sharpest of Pillow's filters.
"""

from __future__ import annotations

import gzip
import hashlib
import random
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from latentdiff.data.sources import require_english_only, require_system_path
from latentdiff.data.writer import SourceItem, SourceResult
from latentdiff.errors import UserError

DATA_DIR = "/usr/share/datasets/fashion-mnist"
PACKAGE = "dataset-fashion-mnist"
FILES = {  # official split -> (images, labels), as the package installs them
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# Label index -> the noun phrase used in captions (with its article), from the dataset's README.
LABELS = ("a t-shirt", "a pair of trousers", "a pullover", "a dress", "a coat", "a sandal", "a shirt",
          "a sneaker", "a bag", "an ankle boot")
LABEL_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot")
TEMPLATES = (
    "a photo of {}",
    "a grayscale product photo of {}",
    "a black and white picture of {}",
    "{} on a black background",
    "a low resolution photo of {}",
    "a catalog photo of {}",
    "a small grayscale image of {}",
)
CAPTIONS_PER_IMAGE = 3
VALIDATION_FRACTION = 1 / 12  # of train: 5,000 of 60,000 on average


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped or not): magic (0, 0, dtype 0x08 = uint8, ndim), big-endian int32 dims, data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise UserError(f"{path} is not an unsigned-byte IDX file; reinstall it with "
                        f"`sudo apt-get install --reinstall -y {PACKAGE}`.")
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise UserError(f"{path} is truncated ({body.size} of {int(np.prod(dims))} bytes); reinstall it with "
                        f"`sudo apt-get install --reinstall -y {PACKAGE}`.")
    return body.reshape(dims)


def captions_for(key: str, label: int) -> list[str]:
    """A few templated captions, chosen by the key so the same image always gets the same ones."""
    rng = random.Random(f"fashion-mnist:{key}")
    return [template.format(LABELS[label]) for template in rng.sample(TEMPLATES, CAPTIONS_PER_IMAGE)]


def is_validation(key: str) -> bool:
    digest = hashlib.sha256(f"fashion-mnist-validation:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < VALIDATION_FRACTION


def _image(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(pixels)  # (28, 28) uint8 -> mode "L"


def read(*, languages: list[str] = ("en",)) -> SourceResult:
    require_english_only(languages, "fashion-mnist")
    root = require_system_path(DATA_DIR, PACKAGE, "fashion-mnist")
    arrays = {}
    for split, (images_name, labels_name) in FILES.items():
        images_path = require_system_path(root / images_name, PACKAGE, "fashion-mnist")
        labels_path = require_system_path(root / labels_name, PACKAGE, "fashion-mnist")
        images, labels = read_idx(images_path), read_idx(labels_path)  # (N, 28, 28), (N,)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise UserError(f"{images_path} and {labels_path} do not match (shapes {images.shape}, {labels.shape}); "
                            f"reinstall them with `sudo apt-get install --reinstall -y {PACKAGE}`.")
        arrays[split] = (images, labels)

    def items():
        for official, (images, labels) in arrays.items():
            for index in range(len(images)):
                key = f"fashion-mnist-{official}-{index:05d}"
                split = "validation" if official == "train" and is_validation(key) else official
                label = int(labels[index])
                yield SourceItem(key=key, load_image=partial(_image, images[index]), captions=captions_for(key, label),
                                 split=split, attributes={"label": label, "label_name": LABEL_NAMES[label]})

    total = sum(len(images) for images, _ in arrays.values())
    return SourceResult(source="fashion-mnist", items=items(), num_items=total,
                        info={"labels": list(LABEL_NAMES), "validation_carved_from": "train"})
