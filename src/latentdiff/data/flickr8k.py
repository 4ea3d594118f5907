"""`latentdiff prepare-data flickr8k PATH`: Flickr8k in any of the three layouts people have.

- official: `Flickr8k.token.txt` (`1000268201_693b08cb0e.jpg#0<TAB>caption`), the split files
  `Flickr_8k.{train,dev,test}Images.txt` (dev -> validation), images in `Flicker8k_Dataset/` (sic) or
  `Images/`; the text files may sit in a subfolder (`Flickr8k_text/`).
- kaggle: `captions.txt`, a CSV with the header `image,caption`, and `Images/`.
- karpathy: `dataset_flickr8k.json` (its own train/val/test/restval splits) and an images folder.

The layout is detected in that order (the first whose caption file is found, at most two folders
deep) and named in the manifest (`layout`). The official splits are kept wherever the layout carries
them or the split files sit beside it (Kaggle + split files); images that the split files leave out
(the release has 91) are skipped with that reason, so every layout gives the same 8,000 images. With
no split files at all, the writer splits by image name. Items are sorted by image name, so the same
images and captions give the same prepared dataset whatever the layout. Blank lines are ignored; bad
lines, duplicates and missing images are skipped and listed in the manifest with file and line.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from latentdiff.data.confine import require_inside
from latentdiff.data.karpathy import parse_karpathy
from latentdiff.data.reader_common import (IMAGE_EXTENSIONS, Entry, display, duplicate_caption, find_file,
                                           find_image_dir, has_images, line_item, read_text, shorten, to_items)
from latentdiff.data.writer import Skipped, SourceResult, clean_caption
from latentdiff.errors import UserError

TOKEN_FILE = "Flickr8k.token.txt"
KAGGLE_FILE = "captions.txt"
KARPATHY_FILE = "dataset_flickr8k.json"
SPLIT_FILES = {"train": "Flickr_8k.trainImages.txt", "validation": "Flickr_8k.devImages.txt",
               "test": "Flickr_8k.testImages.txt"}
IMAGE_DIR_NAMES = ("Flicker8k_Dataset", "Flickr8k_Dataset", "Images", "images", "Flickr8k_images")
# `1000268201_693b08cb0e.jpg#0<TAB>A child in a pink dress ...` (a space instead of the tab is tolerated).
TOKEN_LINE = re.compile(r"^(?P<name>[^\t#]+)#(?P<index>\d+)(?:[\t ]+(?P<caption>.*))?$")


def read(path: str, *, follow_symlinks: bool = False) -> SourceResult:
    root = Path(path).expanduser()
    layout, caption_file = detect_layout(root)
    if root.is_file():
        root = root.parent
    image_dir = _image_dir(root, caption_file)
    skipped: list[Skipped] = []
    split_files: dict[str, Path] = {}
    require_inside([caption_file], root, follow_symlinks)
    if layout == "karpathy":
        entries = parse_karpathy(caption_file, root, lambda _filepath: image_dir, skipped)
    else:
        parse = parse_token_file if layout == "official" else parse_kaggle_file
        entries = parse(caption_file, image_dir, skipped)
        split_files = find_split_files(root, caption_file.parent)
        require_inside(split_files.values(), root, follow_symlinks)
        if split_files:
            entries = apply_split_files(entries, split_files, root, skipped)
    items, dropped = to_items(entries, root, skipped, follow_symlinks)
    info = {
        "layout": layout,
        "layout_files": sorted(display(p, root) for p in [caption_file, *split_files.values()]),
        "image_folder": display(image_dir, root),
        "split_origin": "official" if layout == "karpathy" or split_files else "hash of the image name",
        "captions_over_limit_dropped": dropped,
    }
    return SourceResult(source="flickr8k", items=items, skipped=skipped, num_items=len(items), info=info)


def detect_layout(root: Path) -> tuple[str, Path]:
    """('official' | 'karpathy' | 'kaggle', the caption file), or one sentence naming what was looked for."""
    layouts = (("official", TOKEN_FILE), ("karpathy", KARPATHY_FILE), ("kaggle", KAGGLE_FILE))
    if root.is_file():  # PATH may name the caption file itself
        for layout, name in layouts:
            if root.name.lower() == name.lower():
                return layout, root
    for layout, name in layouts:
        found = find_file(root, [name])
        if found is not None:
            return layout, found
    raise UserError(f"{root} does not look like Flickr8k: found none of {TOKEN_FILE} (official release), "
                    f"{KARPATHY_FILE} (Karpathy) or {KAGGLE_FILE} (Kaggle) in it or two folders below; "
                    "point PATH at the folder that holds one of them.")


def _image_dir(root: Path, caption_file: Path) -> Path:
    found = find_image_dir([root, caption_file.parent], IMAGE_DIR_NAMES)
    if found is None:  # PATH may be the text folder itself, beside the image folder
        found = find_image_dir([root.parent], IMAGE_DIR_NAMES, max_depth=0)
    if found is not None:
        return found
    if has_images(caption_file.parent):  # images unpacked beside the caption file
        return caption_file.parent
    raise UserError(f"Found {display(caption_file, root)} but no folder of images: looked for "
                    f"{', '.join(n + '/' for n in IMAGE_DIR_NAMES)} under {root}; unpack the images into one of them.")


def parse_token_file(path: Path, image_dir: Path, skipped: list[Skipped]) -> list[Entry]:
    """`name#index<TAB>caption` lines; captions ordered by index, as the release numbers them."""
    entries: dict[str, Entry] = {}
    by_index: dict[str, dict[int, str]] = {}
    first_line: dict[tuple[str, int], int] = {}
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        match = TOKEN_LINE.match(line.strip(" \r\n\ufeff"))
        if match is None:
            skipped.append(Skipped(line_item(path, number), f"malformed line (expected 'IMAGE.jpg#N<TAB>caption', "
                                                            f"got {shorten(line)!r})"))
            continue
        name, index = match["name"].strip(), int(match["index"])
        caption = clean_caption(match["caption"] or "")
        if (name, index) in first_line:
            skipped.append(Skipped(line_item(path, number), f"duplicate entry ({name}#{index} is already on "
                                                            f"line {first_line[name, index]})"))
            continue
        first_line[name, index] = number
        entries.setdefault(name, Entry(key=name, path=image_dir / name, origin=path.name, folder=image_dir))
        if not caption:
            skipped.append(Skipped(line_item(path, number), f"empty caption (of {name}#{index})"))
            continue
        by_index.setdefault(name, {})[index] = caption
    for name, entry in entries.items():
        for index, caption in sorted(by_index.get(name, {}).items()):
            if not entry.add_caption(caption):
                skipped.append(duplicate_caption(line_item(path, first_line[name, index]), entry, f"{name}#{index}"))
    return list(entries.values())


def parse_kaggle_file(path: Path, image_dir: Path, skipped: list[Skipped]) -> list[Entry]:
    """Kaggle's `captions.txt`: CSV with a header naming `image` and `caption` columns; one row per
    caption. Lines are parsed one at a time, so one stray quote spoils one line, not the file."""
    lines = read_text(path).splitlines()
    header_number = next((n for n, line in enumerate(lines, start=1) if line.strip()), None)
    if header_number is None:
        raise UserError(f"{path} is empty; download the Kaggle Flickr8k archive again.")
    header = [c.strip().lower() for c in next(csv.reader([lines[header_number - 1]]))]
    if "image" not in header or "caption" not in header:
        raise UserError(f"{path} has the columns {', '.join(header)} but Kaggle's Flickr8k captions.txt has "
                        "'image,caption'; fix its header or point PATH at another layout.")
    image_col, caption_col = header.index("image"), header.index("caption")
    entries: dict[str, Entry] = {}
    first_line: dict[tuple[str, str], int] = {}
    for number, line in enumerate(lines[header_number:], start=header_number + 1):
        if not line.strip():
            continue
        row = _kaggle_row(line, image_col, caption_col, len(header))
        if row is None or not row[0].lower().endswith(IMAGE_EXTENSIONS):
            skipped.append(Skipped(line_item(path, number), f"malformed line (expected 'image,caption', "
                                                            f"got {shorten(line)!r})"))
            continue
        name = row[0]
        caption = clean_caption(row[1])
        entry = entries.setdefault(name, Entry(key=name, path=image_dir / name, origin=path.name, folder=image_dir))
        if not caption:
            skipped.append(Skipped(line_item(path, number), f"empty caption (of {name})"))
            continue
        if (name, caption) in first_line:
            skipped.append(Skipped(line_item(path, number), f"duplicate entry (line {first_line[name, caption]} "
                                                            f"already gives this caption of {name})"))
            continue
        first_line[name, caption] = number
        entry.add_caption(caption)
    return list(entries.values())


def _kaggle_row(line: str, image_col: int, caption_col: int, width: int) -> tuple[str, str] | None:
    """(image, caption) of one captions.txt line, or None when it has no such shape."""
    if (image_col, caption_col, width) == (0, 1, 2):
        # File names hold no commas, so everything after the first comma is the caption, quoted or not
        # (this also keeps captions whose inner quotes were not doubled, which a CSV parser rejects).
        name, comma, caption = line.partition(",")
        if not comma:
            return None
        caption = caption.strip()
        if len(caption) >= 2 and caption[0] == caption[-1] == '"':
            caption = caption[1:-1].replace('""', '"')
        return name.strip(), caption
    try:
        row = next(csv.reader([line], strict=True))
    except csv.Error:
        return None
    return (row[image_col].strip(), row[caption_col]) if len(row) == width else None


def find_split_files(root: Path, text_dir: Path) -> dict[str, Path]:
    """The official split files found beside the caption file or anywhere near the top of `root`."""
    found = {}
    for split, name in SPLIT_FILES.items():
        path = find_file(text_dir, [name], max_depth=0) or find_file(root, [name])
        if path is not None:
            found[split] = path
    return found


def apply_split_files(entries: list[Entry], split_files: dict[str, Path], root: Path,
                      skipped: list[Skipped]) -> list[Entry]:
    """Give each entry its official split; entries in no split file, or in two, are skipped."""
    split_of: dict[str, str] = {}
    conflicts: dict[str, set[str]] = {}
    for split, path in split_files.items():
        for line in read_text(path).splitlines():
            name = line.strip()
            if not name:
                continue
            if name in split_of and split_of[name] != split:
                conflicts.setdefault(name, {split_of[name]}).add(split)
            split_of.setdefault(name, split)
    names = ", ".join(p.name for p in split_files.values())
    kept = []
    for entry in entries:
        if entry.key in conflicts:
            splits = ", ".join(sorted(conflicts[entry.key]))
            skipped.append(Skipped(entry.key, f"listed in several split files ({splits})"))
        elif entry.key not in split_of:
            skipped.append(Skipped(entry.key, f"not listed in any split file ({names})"))
        else:
            entry.split = split_of[entry.key]
            kept.append(entry)
    listed_without_captions = sorted(set(split_of) - {e.key for e in entries})
    for name in listed_without_captions:
        skipped.append(Skipped(name, f"no caption line (listed in {names}, not in the caption file)"))
    return kept
