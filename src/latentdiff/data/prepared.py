"""Reading a prepared dataset: the contract every training, evaluation and serving stage relies on.

Layout (written by `latentdiff prepare-data`, see `latentdiff.data.writer`):

    DIR/manifest.json                  source, image_size, languages, counts per split, skipped items
    DIR/{train,validation,test}/       PNG images (RGB, image_size x image_size) + metadata.jsonl

Each `metadata.jsonl` line is one image:
    {"file_name": "000123.png", "id": "<source id>", "text": ["caption 1", ...],
     "language": ["en", ...],        # parallel to `text`, one language code per caption
     "attributes": {...}}            # optional: ground truth of generated sources (shapes)

The same dataset may instead be stored as tar shards (`--format webdataset`, see `latentdiff.data.shards`);
the rows then also say where each PNG lies in its shard, and `ImageRecord.open_image` reads it from there.

The imagefolder layout is a Hugging Face `imagefolder` tree: `datasets.load_dataset("imagefolder", data_dir=DIR)` loads it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from latentdiff.data.tar_member import open_member_image
from latentdiff.errors import UserError

SPLITS = ("train", "validation", "test")
MANIFEST_FILENAME = "manifest.json"
METADATA_FILENAME = "metadata.jsonl"


@dataclass
class ImageRecord:
    path: Path  # absolute path of the PNG
    captions: list[str]
    languages: list[str]
    id: str = ""
    attributes: dict[str, Any] | None = None
    # The webdataset layout (`latentdiff.data.shards`): the PNG is `size` bytes at `offset` in this tar, and
    # `path` only names it (SHARD.tar/KEY.png) in messages.
    shard: Path | None = None
    offset: int = 0
    size: int = 0

    def open_image(self):
        """The image as a PIL image (lazily loaded), from its file or from its shard; use it in a `with`."""
        from PIL import Image

        if self.shard is None:
            return Image.open(self.path)
        return open_member_image(self.shard, self.offset, self.size)


@dataclass
class PreparedDataset:
    root: Path
    manifest: dict[str, Any]
    _cache: dict[str, list[ImageRecord]] = field(default_factory=dict, repr=False)

    @property
    def image_size(self) -> int:
        return int(self.manifest["image_size"])

    def records(self, split: str) -> list[ImageRecord]:
        """Every image of `split` in file order; [] for a split the dataset does not have."""
        if split not in self._cache:
            self._cache[split] = read_split(self.root, split)
        return self._cache[split]

    def require_split(self, split: str) -> list[ImageRecord]:
        records = self.records(split)
        if not records:
            raise UserError(f"The dataset at {self.root} has no '{split}' images; prepare it again with "
                            f"`latentdiff prepare-data ... --out {self.root}` from a source that has enough images.")
        return records


def caption_languages(records: list[ImageRecord]) -> list[str]:
    """The languages the records' captions are in, sorted."""
    return sorted({language for record in records for language in record.languages})


def evenly_spaced(items: list, count: int) -> list:
    """`count` of the items spread evenly over the whole list, without randomness (all of them when count is 0 or
    at least their number). A prepared split is sorted by name, so its first items are all of one kind (flags)."""
    if count <= 0 or len(items) <= count:
        return list(items)
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


def read_split(root: Path, split: str) -> list[ImageRecord]:
    return list(iter_split(root, split))


def iter_split(root: Path, split: str):
    """The split's records one by one, read from metadata.jsonl as they are needed (flat memory)."""
    meta_path = root / split / METADATA_FILENAME
    if not meta_path.exists():
        return
    with open(meta_path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield record_from_row(root, split, json.loads(line))


def record_from_row(root: Path, split: str, row: dict[str, Any]) -> ImageRecord:
    captions = row["text"] if isinstance(row["text"], list) else [row["text"]]
    languages = row.get("language") or ["en"] * len(captions)
    if isinstance(languages, str):
        languages = [languages] * len(captions)
    shard = (root / split / row["shard"]).resolve() if "shard" in row else None
    path = shard / row["file_name"] if shard is not None else (root / split / row["file_name"]).resolve()
    return ImageRecord(path=path, captions=list(captions), languages=list(languages),
                       id=str(row.get("id", row["file_name"])), attributes=row.get("attributes"), shard=shard,
                       offset=int(row.get("offset", 0)), size=int(row.get("size", 0)))


def open_prepared(path: str | Path) -> PreparedDataset:
    """Open a prepared dataset folder, or end with one sentence saying how to make one."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise UserError(f"No dataset folder at {root}; create one with `latentdiff prepare-data SOURCE --out {root}`.")
    manifest_path = root / MANIFEST_FILENAME
    if not manifest_path.exists():
        raise UserError(f"{root} is not a prepared dataset (no {MANIFEST_FILENAME}); create one with "
                        f"`latentdiff prepare-data SOURCE [PATH] --out {root}`.")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{manifest_path} is not valid JSON ({err}); prepare the dataset again.") from None
    return PreparedDataset(root=root.resolve(), manifest=manifest)


def load_image_array(image: ImageRecord | Path) -> np.ndarray:
    """(H, W, 3) uint8 of a record (either layout) or of an image file."""
    from PIL import Image  # PIL and torch load only when images do: the commands open datasets to check them first

    with (image.open_image() if isinstance(image, ImageRecord) else Image.open(image)) as img:
        return np.array(img.convert("RGB"), dtype=np.uint8)  # a writable copy: torch.from_numpy wants one


class ImageCaptionDataset:
    """A torch-style map dataset over one split.

    Item: {"pixel_values": float tensor (3, H, W) in [-1, 1], "captions": list[str], "index": int}.
    Which caption is used for a step is the training task's choice (one drawn per step, with the
    task's own seeded generator) so resumed runs draw the same captions.
    """

    def __init__(self, dataset: PreparedDataset, split: str):
        self.records = dataset.require_split(split)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        return {"pixel_values": pixel_values(record), "captions": record.captions, "index": index}


def pixel_values(record: ImageRecord):
    """(3, H, W) float tensor in [-1, 1]."""
    import torch  # here, as PIL above: the commands open datasets to check them before torch is needed

    return torch.from_numpy(load_image_array(record)).permute(2, 0, 1).float().div(127.5).sub(1.0)


def draw_caption(captions: list[str], rng: random.Random) -> str:
    """One of an image's captions, drawn with the caller's seeded RNG."""
    return captions[rng.randrange(len(captions))]
