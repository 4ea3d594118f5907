"""`latentdiff prepare-data coco PATH`: COCO captions, in either layout people have.

- karpathy: `dataset_coco.json` (Karpathy's split: train + restval -> train, val -> validation, test ->
  test; 5,000 images each for validation and test) with the `train2014/` and `val2014/` folders its
  `filepath`s name. Used when that file and at least one of those folders are there, because it is the
  split published captioning results use.
- official: `captions_train2017.json` / `captions_val2017.json` (or 2014), usually in `annotations/`,
  with images in `train2017/`, `val2017/` (or the 2014 names), possibly under `images/`. When both years
  are there, the newest year whose image folders exist is used (2017 re-splits the same images, so
  mixing years would duplicate them). Splits: the train file -> train; COCO publishes no test captions,
  so the val file is divided deterministically, half validation and half test, by a hash of the image
  file name (and `--seed`). With only one of the two files, its images get the writer's usual split
  by image (90/5/5).

A caption file whose image folder is missing is skipped as one group (one manifest line, not 100k).
Bad entries (no id, annotations naming unknown images, empty captions, duplicate ids) are skipped and
listed with the file and their index in it.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Callable

from latentdiff.data.confine import require_inside
from latentdiff.data.karpathy import load_json, parse_karpathy
from latentdiff.data.reader_common import (Entry, display, duplicate_caption, find_file, find_image_dir, search_dirs,
                                           to_items)
from latentdiff.data.writer import Skipped, SourceResult, clean_caption
from latentdiff.errors import UserError

KARPATHY_FILE = "dataset_coco.json"
KARPATHY_FOLDERS = ("train2014", "val2014")
CAPTIONS_FILE = re.compile(r"^captions_(?P<part>train|val)(?P<year>\d{4})\.json$", re.IGNORECASE)
# Share of the official val file that becomes the test split (the rest is validation).
VAL_TEST_FRACTION = 0.5


def read(path: str, *, seed: int = 0, follow_symlinks: bool = False) -> SourceResult:
    root = Path(path).expanduser()
    if root.is_file():
        root = root.parent
    skipped: list[Skipped] = []
    karpathy = find_file(root, [KARPATHY_FILE])
    if karpathy is not None and any(_image_dir(root, name) for name in KARPATHY_FOLDERS):
        folders: dict[str, Path | None] = {}

        def image_dir_for(filepath: str) -> Path | None:
            if filepath not in folders:
                folders[filepath] = _image_dir(root, filepath) if filepath else root
            return folders[filepath]

        require_inside([karpathy], root, follow_symlinks)
        entries = parse_karpathy(karpathy, root, image_dir_for, skipped)
        info = {"layout": "karpathy", "layout_files": [display(karpathy, root)], "split_origin": "official"}
    else:
        entries, info = _read_official(root, seed, skipped, follow_symlinks)
    items, dropped = to_items(entries, root, skipped, follow_symlinks)
    info["captions_over_limit_dropped"] = dropped
    return SourceResult(source="coco", items=items, skipped=skipped, num_items=len(items), info=info)


def _image_dir(root: Path, name: str) -> Path | None:
    """`name/` (e.g. val2017) under PATH, else beside it (PATH may be the annotations folder)."""
    return find_image_dir([root], [name]) or find_image_dir([root.parent], [name], max_depth=0)


def find_caption_files(root: Path) -> dict[str, dict[str, Path]]:
    """year -> {'train'|'val': path} for every `captions_{train,val}YYYY.json` (shallowest wins)."""
    found: dict[str, dict[str, Path]] = defaultdict(dict)
    for directory in search_dirs(root):
        try:
            with os.scandir(directory) as it:  # no stat per entry: cheap beside 100k images
                names = sorted(Path(e.path) for e in it if CAPTIONS_FILE.match(e.name) and e.is_file())
        except OSError:
            continue
        for path in names:
            match = CAPTIONS_FILE.match(path.name)
            if match:
                found[match["year"]].setdefault(match["part"].lower(), path)
    return dict(found)


def _read_official(root: Path, seed: int, skipped: list[Skipped], follow_symlinks: bool) -> tuple[list[Entry], dict]:
    by_year = find_caption_files(root)
    if not by_year:
        raise UserError(f"{root} does not look like COCO: found neither {KARPATHY_FILE} (with train2014/ or "
                        "val2014/) nor captions_train2017.json / captions_val2017.json (or 2014) in it or two "
                        "folders below; point PATH at the folder that holds annotations/ and the image folders.")
    usable = {year: {part: path for part, path in files.items() if _image_dir(root, f"{part}{year}")}
              for year, files in by_year.items()}
    years_with_images = sorted((y for y, files in usable.items() if files), reverse=True)
    if not years_with_images:
        wanted = ", ".join(f"{part}{year}/ (for {path.name})" for year, files in sorted(by_year.items())
                           for part, path in sorted(files.items()))
        raise UserError(f"Found COCO caption files in {root} but none of their image folders: looked for {wanted}; "
                        "unpack the images next to the annotations folder.")
    year = years_with_images[0]
    files = by_year[year]
    require_inside(files.values(), root, follow_symlinks)
    both = "train" in usable[year] and "val" in usable[year]
    entries: list[Entry] = []
    for part, path in sorted(files.items()):
        image_dir = _image_dir(root, f"{part}{year}")
        if image_dir is None:
            skipped.append(Skipped(f"{path.name} (all its images)",
                                   f"image folder not found ({part}{year}/ under {root})"))
            continue
        split_for = _split_rule(part, both, seed)
        entries += parse_captions_file(path, root, image_dir, split_for, skipped)
    ignored = sorted(display(p, root) for y, other in by_year.items() if y != year for p in other.values())
    info = {
        "layout": f"official {year}",
        "layout_files": sorted(display(p, root) for p in files.values()),
        "split_origin": ("train file -> train; val file halved into validation and test by a hash of the image name"
                         if both else "hash of the image name"),
    }
    if ignored:
        info["layout_files_ignored"] = ignored
    return entries, info


def _split_rule(part: str, both: bool, seed: int) -> Callable[[str], str | None]:
    if not both:
        return lambda _name: None  # the writer's split by image
    if part == "train":
        return lambda _name: "train"
    return lambda name: val_or_test(name, seed)


def val_or_test(name: str, seed: int) -> str:
    """Deterministic half of the official val file: 'test' or 'validation', by image, never by caption."""
    digest = hashlib.sha256(f"{seed}:coco-val:{name}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < VAL_TEST_FRACTION else "validation"


def _is_id(value: object) -> bool:
    """COCO ids are integers; a string is taken too. Lists, dicts and floats are not ids (nor hashable, some)."""
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def parse_captions_file(path: Path, root: Path, image_dir: Path, split_for: Callable[[str], str | None],
                        skipped: list[Skipped]) -> list[Entry]:
    """COCO `{"images": [{"id", "file_name"}], "annotations": [{"id", "image_id", "caption"}]}`."""
    data = load_json(path, root, "the COCO annotations (annotations_trainval)")
    images = data.get("images") if isinstance(data, dict) else None
    annotations = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(images, list) or not isinstance(annotations, list):
        raise UserError(f"{display(path, root)} has no 'images' and 'annotations' lists, so it is not a COCO "
                        "captions file; download annotations_trainval again.")
    by_id: dict[object, Entry] = {}
    image_index: dict[object, int] = {}
    for index, image in enumerate(images):
        item = f"{path.name} images[{index}]"
        file_name = image.get("file_name") if isinstance(image, dict) else None
        if not isinstance(file_name, str) or not file_name.strip() or not _is_id(image.get("id")):
            skipped.append(Skipped(item, "malformed entry (needs a number or string 'id' and a 'file_name')"))
            continue
        if image["id"] in by_id:
            first = image_index[image["id"]]
            skipped.append(Skipped(item, f"duplicate entry (image id {image['id']} is already images[{first}])"))
            continue
        name = file_name.strip()
        by_id[image["id"]] = Entry(key=name, path=image_dir / name, origin=path.name, split=split_for(name),
                                   folder=image_dir)
        image_index[image["id"]] = index
    annotation_index: dict[object, int] = {}
    for index, annotation in enumerate(annotations):
        item = f"{path.name} annotations[{index}]"
        if (not isinstance(annotation, dict) or not _is_id(annotation.get("image_id"))
                or not isinstance(annotation.get("caption", ""), str)
                or not (annotation.get("id") is None or _is_id(annotation["id"]))):
            skipped.append(Skipped(item, "malformed entry (needs a number or string 'image_id' and a 'caption' "
                                         "string)"))
            continue
        annotation_id = annotation.get("id")
        if annotation_id is not None and annotation_id in annotation_index:
            skipped.append(Skipped(item, f"duplicate entry (annotation id {annotation_id} is already "
                                         f"annotations[{annotation_index[annotation_id]}])"))
            continue
        if annotation_id is not None:
            annotation_index[annotation_id] = index
        entry = by_id.get(annotation["image_id"])
        if entry is None:
            skipped.append(Skipped(item, f"unknown image id ({annotation['image_id']!r} is not in 'images')"))
            continue
        caption = clean_caption(annotation.get("caption", ""))
        if not caption:
            skipped.append(Skipped(item, f"empty caption (of {entry.key})"))
            continue
        if not entry.add_caption(caption):
            skipped.append(duplicate_caption(item, entry))
    return list(by_id.values())
