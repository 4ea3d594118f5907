"""The webdataset layout of a prepared dataset: tar shards instead of one PNG file per image.

`latentdiff prepare-data ... --format webdataset` writes (the imagefolder layout is in `prepared.py`):

    DIR/manifest.json                  as for imagefolder, plus "format": "webdataset", "samples_per_shard"
    DIR/index.json                     the shard list: {"format": "webdataset", "samples_per_shard": N,
                                       "splits": {"train": [{"url": "train/shard-000000.tar",
                                       "num_samples": N}, ...], ...}}
    DIR/{split}/shard-%06d.tar         N samples each (the last one fewer), in split order; sample KEY is
                                       KEY.png (the image) + KEY.json (captions, languages, id, attributes)
    DIR/{split}/metadata.jsonl         the imagefolder rows, each also saying where its PNG lies in its
                                       tar: "shard" (file name), "offset" and "size" (bytes)

Shards are what every large-scale loader streams (webdataset, HF `datasets.load_dataset("webdataset",
data_files=...)`, NVIDIA DALI): a few thousand large files instead of millions of small ones. Training
reads single samples at the byte offsets recorded in metadata.jsonl (one seek + read inside a tar, no
extraction), so the loop's seeded sampler keeps its exact-sample resume and its split of every epoch
across processes and DataLoader workers (`latentdiff.training.data_order`).

The shards are packed from the imagefolder tree that `write_prepared_dataset` writes into its temporary
folder (deduplication, splits and skip reasons stay in one place); each PNG is deleted once packed.
"""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path
from typing import Any

from tqdm import tqdm

from latentdiff.data.prepared import MANIFEST_FILENAME, METADATA_FILENAME, SPLITS
from latentdiff.errors import UserError

FORMATS = ("imagefolder", "webdataset")
INDEX_FILENAME = "index.json"
SHARD_PATTERN = "shard-{:06d}.tar"
# 1,000 samples of 64-256 px PNGs make shards of 5-100 MB, webdataset's advice (100 MB-1 GB) for large
# images and few enough files for COCO (118 shards); a full epoch needs at least one shard per rank.
DEFAULT_SAMPLES_PER_SHARD = 1000
# Tar entries carry this mtime, so the same input gives the same shard bytes (as the PNGs carry no timestamps).
FIXED_MTIME = 0.0


def _rows_in_chunks(path: Path, size: int):
    """The rows of a metadata.jsonl, `size` at a time (only one chunk in memory)."""
    chunk = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                chunk.append(json.loads(line))
                if len(chunk) == size:
                    yield chunk
                    chunk = []
    if chunk:
        yield chunk


def _member_locations(shard: Path) -> dict[str, tuple[int, int]]:
    """{member name: (byte offset of its data, size)} of a tar file, read from its headers only."""
    with tarfile.open(shard) as tar:
        return {member.name: (member.offset_data, member.size) for member in tar.getmembers()}


def pack_split(root: Path, split: str, samples_per_shard: int) -> list[dict[str, Any]]:
    """Pack `root/split` (an imagefolder split) into tar shards with webdataset's TarWriter, delete its
    PNGs and rewrite its metadata.jsonl with each sample's place in its shard. Returns the shard list."""
    try:
        import webdataset  # the `shards` extra: only --format webdataset needs it, so say how to install it
    except ImportError:
        raise UserError("--format webdataset needs the webdataset package; install it with "
                        "`pip install 'latentdiff[shards]'` (or `pip install webdataset`).") from None

    folder = root / split
    with open(folder / METADATA_FILENAME, encoding="utf-8") as fh:
        num_shards = -(-sum(1 for line in fh if line.strip()) // samples_per_shard)
    shards = []
    located = folder / f".{METADATA_FILENAME}.tmp"
    with open(located, "w", encoding="utf-8") as out:
        chunks = _rows_in_chunks(folder / METADATA_FILENAME, samples_per_shard)
        with tqdm(chunks, total=num_shards, desc=f"packing {split} shards", unit="shard") as progress:
            for number, chunk in enumerate(progress):
                name = SHARD_PATTERN.format(number)
                with open(folder / name, "wb") as stream:
                    writer = webdataset.TarWriter(stream, mtime=FIXED_MTIME)
                    for row in chunk:
                        meta = {k: v for k, v in row.items() if k != "file_name"}
                        writer.write({"__key__": Path(row["file_name"]).stem,
                                      "png": (folder / row["file_name"]).read_bytes(), "json": meta})
                    writer.close()
                locations = _member_locations(folder / name)
                for row in chunk:
                    (folder / row["file_name"]).unlink()
                    offset, size = locations[row["file_name"]]
                    row.update(shard=name, offset=offset, size=size)
                    out.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
                shards.append({"url": f"{split}/{name}", "num_samples": len(chunk)})
    os.replace(located, folder / METADATA_FILENAME)
    return shards


def pack_webdataset(root: str | Path, samples_per_shard: int = DEFAULT_SAMPLES_PER_SHARD) -> dict[str, Any]:
    """Turn the imagefolder dataset at `root` into the webdataset layout in place; returns the index."""
    if samples_per_shard < 1:
        raise UserError(f"--samples-per-shard must be at least 1 (got {samples_per_shard}); 1000 is a good size.")
    root = Path(root)
    index = {"format": "webdataset", "samples_per_shard": samples_per_shard,
             "splits": {split: pack_split(root, split, samples_per_shard)
                        for split in SPLITS if (root / split / METADATA_FILENAME).exists()}}
    (root / INDEX_FILENAME).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    manifest_path = root / MANIFEST_FILENAME
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest.update(format="webdataset", samples_per_shard=samples_per_shard)
    manifest_path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    return index
