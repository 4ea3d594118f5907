"""Writing a prepared dataset (the layout is described in `latentdiff.data.prepared`).

Every source (readers of user datasets, built-in generators) yields `SourceItem`s and records the
items it could not use as `Skipped`; `write_prepared_dataset` does the rest the same way for all:
image normalisation, caption cleaning, de-duplication, the split, file names, metadata and manifest.
Same input -> same output bytes (items keep the source's order, names are counters, PNGs carry no
timestamps, JSON keys are sorted).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from latentdiff.data.images import square_image
from latentdiff.data.prepared import MANIFEST_FILENAME, METADATA_FILENAME, SPLITS
from latentdiff.data.shards import INDEX_FILENAME, pack_webdataset
from latentdiff.data.staging import Heartbeat, make_temp_dir, remove_stale_temp_dirs
from latentdiff.errors import UserError
from latentdiff.options import CONFIG_FILENAME

MANIFEST_VERSION = 1
# Fractions of a source without official splits that go to validation and test (the rest trains).
VALIDATION_FRACTION = 0.05
TEST_FRACTION = 0.05
# What an earlier output may hold, so a re-run may replace it (anything else is the user's and stays): the
# manifest keys this writer has always written, the top-level files of the writer, `pack_webdataset` and the
# stage's saved config, the split folders' files, and the latent cache training keeps in the dataset
# (`latentdiff.data.cache.DEFAULT_CACHE_SUBDIR`, not imported: that module loads torch), stale once replaced.
OUTPUT_MANIFEST_KEYS = ("version", "source", "counts")
OUTPUT_FILES = (MANIFEST_FILENAME, CONFIG_FILENAME, INDEX_FILENAME)
OUTPUT_SPLIT_FILE = re.compile(r"\d{6}\.png|shard-\d{6}\.tar|" + re.escape(METADATA_FILENAME))
OUTPUT_CACHE_DIR = ".latentdiff-cache"


class SkipItem(Exception):
    """Raised by a source's `load_image` to skip that item, with the message as the recorded reason."""


@dataclass
class SourceItem:
    key: str  # stable identity of the image (file name, emoji code point...): dedupe and split by it
    load_image: Callable[[], Image.Image]  # opened lazily, so a bad file is skipped, not fatal
    captions: list[str]
    languages: list[str] | None = None  # parallel to captions; None means all English
    split: str | None = None  # the source's official split, when it has one
    attributes: dict[str, Any] | None = None  # ground truth of generated sources


@dataclass
class Skipped:
    item: str
    reason: str


@dataclass
class SourceResult:
    source: str
    items: Iterable[SourceItem]
    skipped: list[Skipped] = field(default_factory=list)  # the reader's own (missing files, bad lines)
    languages: list[str] = field(default_factory=lambda: ["en"])
    num_items: int | None = None  # for the progress bar, when known
    info: dict[str, Any] = field(default_factory=dict)  # extra manifest fields (layout found, ...)


def _key_position(key: str, seed: int) -> float:
    """Where the key's hash falls in [0, 1): below TEST_FRACTION is test, then validation, then train."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_for_key(key: str, seed: int = 0) -> str:
    """Deterministic split by image (never by caption): a hash of the key picks the bucket."""
    u = _key_position(key, seed)
    if u < TEST_FRACTION:
        return "test"
    if u < TEST_FRACTION + VALIDATION_FRACTION:
        return "validation"
    return "train"


def clean_caption(text: str) -> str:
    return " ".join(str(text).split())


def write_prepared_dataset(result: SourceResult, out: str | Path, image_size: int, *, seed: int = 0,
                           max_images: int = 0, format: str = "imagefolder",
                           samples_per_shard: int = 1000) -> dict[str, Any]:
    """Write `result` as a prepared dataset at `out` (replacing an earlier output there, atomically; any other
    non-empty folder is refused, see `check_out_folder`) and return the manifest. Bad items are skipped with
    their reason; this never stops on one bad item.
    `format="webdataset"` packs each split into tar shards of `samples_per_shard` (`latentdiff.data.shards`)."""
    out = check_out_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    removed = remove_stale_temp_dirs(out)
    if removed:
        print(f"removed {len(removed)} unfinished temp folder(s) of an interrupted earlier run beside {out}")
    tmp = make_temp_dir(out)
    try:
        manifest = _write(result, tmp, image_size, seed, max_images)
        if format == "webdataset":
            pack_webdataset(tmp, samples_per_shard)
            manifest.update(format=format, samples_per_shard=samples_per_shard)
        if out.exists():
            check_out_folder(out)  # again: the user may have put files there while this run worked
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def check_out_folder(out: str | Path, source_path: str | Path | None = None) -> Path:
    """The folder `--out` names, links followed (the dataset goes where the link points and the link stays);
    a UserError, before any work, when writing there would lose something: `out` is the source `source_path`
    or holds it, or it is a non-empty folder that is not an earlier output of this writer."""
    try:
        folder = Path(out).resolve()
    except (OSError, RuntimeError) as err:  # a loop of links (RuntimeError before Python 3.13)
        raise UserError(f"--out {out} cannot be followed ({err}); choose an empty or new --out folder.") from None
    if source_path:
        source = Path(source_path).expanduser().resolve()
        if folder == source or folder in source.parents:
            raise UserError(f"--out {out} is or holds the dataset {source_path} being read, which writing there would "
                            f"delete; choose an empty or new --out folder outside it.")
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--out {out} is a file; choose an empty or new --out folder.")
    reason = _not_an_output(folder) if folder.exists() else None
    if reason:
        raise UserError(f"--out {out} is not a dataset prepare-data wrote ({reason}), so it is left as it is; "
                        f"choose an empty or new --out folder.")
    return folder


def is_prepared_output(folder: Path) -> bool:
    """Whether `folder` is a dataset this writer wrote (and nothing else): a source reader passes over it."""
    return (folder / MANIFEST_FILENAME).is_file() and _not_an_output(folder) is None


def _not_an_output(folder: Path) -> str | None:
    """Why the existing folder `folder` may not be replaced, or None when it is empty or an earlier output:
    a manifest of ours and nothing but what the writer, the stage and the latent cache put there."""
    entries = sorted(os.scandir(folder), key=lambda e: e.name)
    if not entries:
        return None
    manifest_file = folder / MANIFEST_FILENAME
    if not manifest_file.is_file() or manifest_file.is_symlink():
        return f"it has no {MANIFEST_FILENAME}"
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except ValueError:  # not JSON, or not UTF-8 (UnicodeDecodeError is a ValueError)
        manifest = None
    if not (isinstance(manifest, dict) and all(key in manifest for key in OUTPUT_MANIFEST_KEYS)
            and isinstance(manifest["counts"], dict)):
        return f"its {MANIFEST_FILENAME} is not one prepare-data writes"
    for entry in entries:
        # Links are never ours, so none is followed into a folder the user keeps elsewhere.
        if entry.name in OUTPUT_FILES and entry.is_file(follow_symlinks=False):
            continue
        if entry.name == OUTPUT_CACHE_DIR and entry.is_dir(follow_symlinks=False):
            continue
        if entry.name in SPLITS and entry.is_dir(follow_symlinks=False):
            inner = sorted(e.name for e in os.scandir(entry.path)
                           if not (e.is_file(follow_symlinks=False) and OUTPUT_SPLIT_FILE.fullmatch(e.name)))
            if not inner:
                continue
            return f"it holds {entry.name}/{inner[0]}"
        return f"it holds {entry.name}"
    return None


def _row_line(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n"


def _write(result: SourceResult, root: Path, image_size: int, seed: int, max_images: int) -> dict[str, Any]:
    """Rows go to each split's metadata.jsonl as they are made (nothing per image is kept in memory but
    its key, for de-duplication), so memory stays flat from 5k to 50k images (benchmarks/bench_scale_rss.py)."""
    skipped = list(result.skipped)
    counts = {split: 0 for split in SPLITS}
    num_captions = {split: 0 for split in SPLITS}
    seen: set[str] = set()
    for split in SPLITS:
        (root / split).mkdir(parents=True)
    kept = 0
    # Per split, the hash-split rows (not split by the source) nearest the start of [0, 1): the ones
    # fill_empty_splits may move, as a max-heap of (-position, index, key) holding the len(SPLITS) lowest.
    movable: dict[str, list[tuple[float, int, str]]] = {split: [] for split in SPLITS}
    heartbeat = Heartbeat(root)  # tells a concurrent run that this temp folder is in use
    spools = {split: open(root / split / METADATA_FILENAME, "w", encoding="utf-8") for split in SPLITS}
    try:
        kept = _write_items(result, root, image_size, seed, max_images, skipped, counts, num_captions, seen, movable,
                            heartbeat, spools)
    finally:
        for spool in spools.values():
            spool.close()
    if kept == 0:
        raise UserError(f"No usable images were found for source '{result.source}' "
                        f"({len(skipped)} skipped; first reason: {skipped[0].reason if skipped else 'none'}); "
                        "check the path and layout.")
    fill_empty_splits(root, counts, num_captions, movable, seed)
    for split in SPLITS:
        if not counts[split]:
            (root / split / METADATA_FILENAME).unlink()
            (root / split).rmdir()  # imagefolder rejects an empty split folder
    manifest = {
        "version": MANIFEST_VERSION,
        "source": result.source,
        "image_size": image_size,
        "languages": result.languages,
        "counts": counts,
        "num_captions": num_captions,
        "seed": seed,
        "skipped": [{"item": s.item, "reason": s.reason} for s in skipped],
        **result.info,
    }
    (root / MANIFEST_FILENAME).write_text(json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True) + "\n",
                                          encoding="utf-8")
    return manifest


def _write_items(result, root, image_size, seed, max_images, skipped, counts, num_captions, seen, movable, heartbeat,
                 spools) -> int:
    """Write every usable item's PNG and metadata row; returns how many were kept."""
    kept = 0
    with tqdm(result.items, total=result.num_items, desc=f"prepare {result.source}", unit="img") as progress:
        for item in progress:
            if max_images and kept >= max_images:
                break
            heartbeat.beat()
            if item.key in seen:
                skipped.append(Skipped(item.key, "duplicate entry (already kept once)"))
                continue
            captions, languages = [], []
            for text, lang in zip(item.captions, item.languages or ["en"] * len(item.captions)):
                text = clean_caption(text)
                if text and text not in captions:
                    captions.append(text)
                    languages.append(lang)
            if not captions:
                skipped.append(Skipped(item.key, "no non-empty caption"))
                continue
            try:
                image = square_image(item.load_image(), image_size)
            except SkipItem as reason:
                skipped.append(Skipped(item.key, str(reason)))
                continue
            except FileNotFoundError:
                skipped.append(Skipped(item.key, "image file not found"))
                continue
            # DecompressionBombError is not an OSError: a corrupt header can claim billions of pixels.
            except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
                skipped.append(Skipped(item.key, f"unreadable image ({type(err).__name__}: {err})"))
                continue
            split = item.split or split_for_key(item.key, seed)
            if split not in counts:
                raise ValueError(f"source gave unknown split {split!r}")
            if not item.split:
                heapq.heappush(movable[split], (-_key_position(item.key, seed), counts[split], item.key))
                if len(movable[split]) > len(SPLITS):
                    heapq.heappop(movable[split])  # drops the highest position
            file_name = f"{counts[split]:06d}.png"
            image.save(root / split / file_name, format="PNG", optimize=False)
            row = {"file_name": file_name, "id": item.key, "text": captions, "language": languages}
            if item.attributes is not None:
                row["attributes"] = item.attributes
            spools[split].write(_row_line(row))
            counts[split] += 1
            num_captions[split] += len(captions)
            seen.add(item.key)
            kept += 1
    return kept


def fill_empty_splits(root: Path, counts: dict[str, int], num_captions: dict[str, int],
                      movable: dict[str, list[tuple[float, int, str]]], seed: int) -> None:
    """Give each empty split one hash-split image when there are >= len(SPLITS) of them in all.

    5% buckets leave a small dataset's test split empty (a 12-image folder gave 11/1/0) and `evaluate`
    then refuses it. The donor is the largest split; the image moved is the one whose hash lies nearest
    to the empty bucket (lowest position), so the choice is deterministic. Files stay numbered
    0..n-1 in source order in every split, so the donor's later files move down one number.
    `counts`, `num_captions` and `movable` (see `_write`) are updated; the metadata files are rewritten."""
    if sum(counts.values()) < len(SPLITS):
        return
    for empty in [s for s in SPLITS if not counts[s]]:
        donor = max(SPLITS, key=lambda s: counts[s])
        if counts[donor] < 2 or not movable[donor]:
            continue
        _, index, _ = max(movable[donor])  # the lowest position
        movable[donor] = [(p, i - (i > index), k) for p, i, k in movable[donor] if i != index]
        heapq.heapify(movable[donor])
        lines = (root / donor / METADATA_FILENAME).read_text(encoding="utf-8").splitlines(keepends=True)
        row = json.loads(lines.pop(index))
        (root / donor / row["file_name"]).rename(root / empty / f"{counts[empty]:06d}.png")
        row["file_name"] = f"{counts[empty]:06d}.png"
        with open(root / empty / METADATA_FILENAME, "a", encoding="utf-8") as fh:
            fh.write(_row_line(row))
        for position in range(index, len(lines)):
            later = json.loads(lines[position])
            renumbered = f"{int(later['file_name'][:6]) - 1:06d}.png"
            (root / donor / later["file_name"]).rename(root / donor / renumbered)
            later["file_name"] = renumbered
            lines[position] = _row_line(later)
        (root / donor / METADATA_FILENAME).write_text("".join(lines), encoding="utf-8")
        counts[empty] += 1
        counts[donor] -= 1
        num_captions[empty] += len(row["text"])
        num_captions[donor] -= len(row["text"])
