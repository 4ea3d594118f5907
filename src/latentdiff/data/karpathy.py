"""Karpathy's caption split files (`dataset_flickr8k.json`, `dataset_flickr30k.json`, `dataset_coco.json`
from caption_datasets.zip), shared by the flickr8k and coco readers.

    {"images": [{"filename": "x.jpg", "filepath": "val2014",   # filepath: COCO only
                 "split": "train" | "restval" | "val" | "test",
                 "sentences": [{"raw": "A dog runs .", "tokens": ["a", "dog", "runs"]}, ...]}, ...]}

`restval` (COCO val2014 images Karpathy moved to training) becomes train, `val` becomes validation.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from latentdiff.data.reader_common import Entry, display, duplicate_caption
from latentdiff.data.writer import Skipped, clean_caption
from latentdiff.errors import UserError

KARPATHY_SPLITS = {"train": "train", "restval": "train", "val": "validation", "test": "test"}


def load_json(path: Path, root: Path, what: str) -> Any:
    """A whole JSON file, or one sentence saying it is damaged (a broken caption file is not one bad item)."""
    try:
        with open(path, encoding="utf-8-sig") as fh:
            return json.load(fh)
    except json.JSONDecodeError as err:
        raise UserError(f"{display(path, root)} is not valid JSON (line {err.lineno}: {err.msg}); "
                        f"download {what} again.") from None
    except UnicodeDecodeError:
        raise UserError(f"{display(path, root)} is not UTF-8 text; download {what} again.") from None


def _caption_of(sentence: Any) -> str:
    if isinstance(sentence, str):
        return sentence
    if not isinstance(sentence, dict):
        return ""
    raw = sentence.get("raw")
    if isinstance(raw, str) and raw.strip():
        return raw
    tokens = sentence.get("tokens")
    if isinstance(tokens, list):
        return " ".join(str(t) for t in tokens)
    return ""


def parse_karpathy(json_path: Path, root: Path, image_dir_for: Callable[[str], Path | None],
                   skipped: list[Skipped]) -> list[Entry]:
    """Entries of a Karpathy file; `image_dir_for(filepath)` gives the folder holding an entry's image
    ('' for Flickr), or None when that folder is missing (its images are then skipped as one group)."""
    data = load_json(json_path, root, "Karpathy's caption_datasets.zip")
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise UserError(f"{display(json_path, root)} has no 'images' list, so it is not a Karpathy split file; "
                        "download caption_datasets.zip again or point PATH at another layout.")
    entries: dict[str, Entry] = {}
    first_index: dict[str, int] = {}
    missing_dirs: Counter[str] = Counter()
    for index, obj in enumerate(images):
        item = f"{json_path.name} images[{index}]"
        filename = obj.get("filename") if isinstance(obj, dict) else None
        if not isinstance(filename, str) or not filename.strip():
            skipped.append(Skipped(item, "malformed entry (no 'filename')"))
            continue
        filename = filename.strip()
        raw_split = obj.get("split")
        split = KARPATHY_SPLITS.get(str(raw_split).strip().lower()) if raw_split is not None else None
        if raw_split is not None and split is None:
            skipped.append(Skipped(item, f"unknown split name ({raw_split!r} for {filename}; "
                                         "expected train, restval, val or test)"))
            continue
        sentences = obj.get("sentences")
        if not isinstance(sentences, list):
            skipped.append(Skipped(item, f"malformed entry (no 'sentences' list for {filename})"))
            continue
        if filename in entries:
            skipped.append(Skipped(item, f"duplicate entry ({filename} is already images[{first_index[filename]}])"))
            continue
        filepath = str(obj.get("filepath") or "")
        directory = image_dir_for(filepath)
        if directory is None:
            missing_dirs[filepath] += 1
            continue
        entry = Entry(key=filename, path=directory / filename, origin=json_path.name, split=split, folder=directory)
        for number, sentence in enumerate(sentences):
            text = _caption_of(sentence)
            if not clean_caption(text):
                skipped.append(Skipped(f"{item} sentences[{number}]", f"empty caption (of {filename})"))
                continue
            if not entry.add_caption(text):
                skipped.append(duplicate_caption(f"{item} sentences[{number}]", entry))
        entries[filename] = entry
        first_index[filename] = index
    for filepath, count in sorted(missing_dirs.items()):
        skipped.append(Skipped(f"{filepath}/ ({count} images)",
                               f"image folder not found ({filepath}/ under {root}, named in {json_path.name})"))
    return list(entries.values())
