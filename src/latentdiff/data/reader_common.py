"""What the readers of user datasets (`flickr8k`, `coco`, `folder`) share: finding files in the layouts
people actually have, split-name aliases, reading text files (by byte order mark, else strict UTF-8:
never a garbled caption), and turning the entries a reader parsed into `SourceItem`s (missing image
files skipped with a precise reason).

A reader parses its caption files into `Entry`s (one per image, captions in the dataset's order) and
records every bad line or entry as a `Skipped` with the file and line it came from; `to_items` then
checks the image files exist and caps the captions. Unreadable or truncated images are found later,
when the writer decodes each one (`open_image_fully`).
"""

from __future__ import annotations

import codecs
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Iterable, Sequence

from latentdiff.data.confine import escape_reason
from latentdiff.data.images import open_image_fully
from latentdiff.data.writer import SourceItem, Skipped, clean_caption
from latentdiff.errors import UserError

# Flickr8k has 5 captions per image and COCO 5 to 7; keeping 5 everywhere makes every image weigh the
# same when a step draws one caption per image.
MAX_CAPTIONS_PER_IMAGE = 5
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
# Folder names Hugging Face `imagefolder` treats as splits (datasets' SPLIT_KEYWORDS), and ours.
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "validation": "validation", "valid": "validation", "val": "validation", "dev": "validation",
    "test": "test", "testing": "test", "eval": "test", "evaluation": "test",
}
# How deep below the folder the user gave we look for a layout's files (`PATH/annotations/x.json`,
# `PATH/Flickr8k_text/Flickr8k.token.txt`, `PATH/coco/images/train2017/`).
SEARCH_DEPTH = 2
# Folders that zip tools on macOS leave behind and that hold no data.
IGNORED_DIRS = ("__MACOSX",)


@dataclass
class Entry:
    """One image as a caption file names it."""

    key: str  # stable identity (file name or path relative to the dataset folder)
    path: Path  # where the image file should be
    origin: str  # the file that named it, for messages
    captions: list[str] = field(default_factory=list)
    split: str | None = None
    folder: Path | None = None  # the folder its name is relative to and must stay in (default: the dataset's)

    def add_caption(self, text: str) -> bool:
        """Add a cleaned caption; False when this image already has exactly this caption."""
        text = clean_caption(text)
        if text in self.captions:
            return False
        self.captions.append(text)
        return True


def duplicate_caption(item: str, entry: Entry, which: str = "") -> Skipped:
    """The manifest's line for a caption `entry` already has (`which`: the caption or its number, to say which)."""
    return Skipped(item, f"duplicate caption ({which + ' ' if which else ''}repeats another caption of {entry.key})")


def normalise_split(name: str | None) -> str | None:
    """'dev' -> 'validation', 'Train' -> 'train', ...; None for a name that is not a split."""
    if name is None:
        return None
    return SPLIT_ALIASES.get(str(name).strip().lower())


def _subdirs(directory: Path) -> list[Path]:
    # scandir's is_dir() needs no stat per entry: cheap even beside a folder of 100k images.
    try:
        with os.scandir(directory) as it:
            return sorted(Path(e.path) for e in it
                          if e.is_dir() and not e.name.startswith(".") and e.name not in IGNORED_DIRS)
    except OSError:
        return []


def search_dirs(root: Path, max_depth: int = SEARCH_DEPTH) -> list[Path]:
    """`root` and its folders down to `max_depth`, breadth first, sorted (so the shallowest wins)."""
    found, level = [root], [root]
    for _ in range(max_depth):
        level = [child for parent in level for child in _subdirs(parent)]
        found.extend(level)
    return found


def find_file(root: Path, names: Sequence[str], max_depth: int = SEARCH_DEPTH) -> Path | None:
    """The shallowest file called one of `names` (case-insensitive; earlier names win at equal depth)."""
    wanted = [n.lower() for n in names]
    for directory in search_dirs(root, max_depth):
        files: dict[str, Path] = {}
        try:
            with os.scandir(directory) as it:
                for e in it:
                    if e.name.lower() in wanted and e.is_file():
                        files.setdefault(e.name.lower(), Path(e.path))
        except OSError:
            continue
        for name in wanted:
            if name in files:
                return files[name]
    return None


def has_images(directory: Path) -> bool:
    try:
        with os.scandir(directory) as it:
            return any(e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS) for e in it)
    except OSError:
        return False


def find_image_dir(roots: Sequence[Path], names: Sequence[str], max_depth: int = SEARCH_DEPTH) -> Path | None:
    """The first folder called one of `names` (in the order given, case-insensitive) under one of
    `roots` that directly holds image files; an archive's doubled folder (`X/X/`) is found too."""
    for name in names:
        for root in roots:
            for directory in search_dirs(root, max_depth + 1):
                if directory.name.lower() == name.lower() and has_images(directory):
                    return directory
    return None


class NotUTF8Error(UserError):
    """A caption or metadata file that is not UTF-8 text (Excel's cp1252 CSV, a Latin-1 .txt): decoding it
    anyway would put replacement characters into captions. `where`: 'line N, byte 0xNN', or ''."""

    def __init__(self, path: Path, where: str = ""):
        at = f" ({where})" if where else ""
        super().__init__(f"{path} is not UTF-8 text{at}; save it as UTF-8 and run again.")
        self.path, self.where = path, where


# Files with a byte order mark say their encoding (Notepad and Excel save UTF-16 with one). UTF-32's
# marks start with UTF-16's, so they are tried first.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def read_text(path: Path) -> str:
    """A text file as str: decoded by its byte order mark (UTF-8, UTF-16, UTF-32), else as strict UTF-8;
    raises `NotUTF8Error` (one sentence) rather than guess an encoding or replace bytes."""
    try:
        return path.read_text(encoding="utf-8-sig")  # the usual case, in one read
    except UnicodeDecodeError:
        pass
    data = path.read_bytes()
    encoding = next((enc for bom, enc in _BOMS if data.startswith(bom)), "utf-8-sig")
    try:
        text = data.decode(encoding)  # the codec drops the mark
    except UnicodeDecodeError as err:
        if encoding != "utf-8-sig":
            raise NotUTF8Error(path) from None
        # Say where, so the user can find the word that is not UTF-8 (err.object: the bytes after a mark).
        line = err.object.count(b"\n", 0, err.start) + 1
        raise NotUTF8Error(path, f"line {line}, byte 0x{err.object[err.start]:02x}") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")  # newlines as text mode reads them


def display(path: Path, root: Path) -> str:
    """`path` as the user would name it: relative to the dataset folder they gave."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def line_item(path: Path, line_number: int) -> str:
    return f"{path.name} line {line_number}"


def shorten(text: str, limit: int = 80) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def to_items(entries: Iterable[Entry], root: Path, skipped: list[Skipped],
             follow_symlinks: bool = False) -> tuple[list[SourceItem], int]:
    """Entries sorted by key (so every layout of the same data gives the same order) -> items.

    Returns the items and how many captions were dropped over `MAX_CAPTIONS_PER_IMAGE`. Entries whose
    image file is missing, a folder, outside the dataset folder (`latentdiff.data.confine`), or that
    have no caption left, are recorded in `skipped`."""
    items: list[SourceItem] = []
    dropped = 0
    for entry in sorted(entries, key=lambda e: e.key):
        # An image folder found beside PATH (PATH = the annotations folder) widens the dataset folder.
        dataset_folder = Path(os.path.commonpath([os.path.abspath(root), os.path.abspath(entry.folder or root)]))
        outside = escape_reason(entry.path, dataset_folder, follow_symlinks, names_folder=entry.folder,
                                named_in=entry.origin)
        if outside:
            skipped.append(Skipped(entry.key, outside))
            continue
        if entry.path.is_dir():
            skipped.append(Skipped(entry.key, f"a folder, not an image file ({display(entry.path, root)}, "
                                              f"named in {entry.origin})"))
            continue
        if not entry.path.is_file():
            skipped.append(Skipped(entry.key, f"image file not found ({display(entry.path, root)}, "
                                              f"named in {entry.origin})"))
            continue
        captions = [c for c in entry.captions if c]
        if not captions:
            skipped.append(Skipped(entry.key, f"no usable caption (in {entry.origin})"))
            continue
        dropped += max(0, len(captions) - MAX_CAPTIONS_PER_IMAGE)
        items.append(SourceItem(key=entry.key, load_image=partial(open_image_fully, entry.path),
                                captions=captions[:MAX_CAPTIONS_PER_IMAGE], split=entry.split))
    return items, dropped
