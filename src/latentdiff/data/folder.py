"""`latentdiff prepare-data folder PATH`: your own captioned images, in one of three forms (the first
found wins, and is named in the manifest as `layout`):

- metadata.jsonl: Hugging Face `imagefolder` style, `{"file_name": "a.jpg", "text": "..." | [...]}` per
  line, at PATH or in its `train/`, `validation/`, `test/` subfolders (any name `imagefolder` accepts:
  `val`, `dev`, `valid`, ...);
- csv: a CSV with an image column (file_name, image, filename, file, path, ...) and a caption column
  (text, caption, captions, prompt, ...): `metadata.csv`, or the one CSV at PATH;
- sidecars: images anywhere under PATH, each with a `.txt` (or `.caption`, any case) file of the same
  name, one caption per line (several lines: several captions); symlinked folders only with
  --follow-symlinks (listed in the manifest without it).

Text files are UTF-8, or UTF-16 with a byte order mark; others are refused, never garbled
(`reader_common.read_text`).

Splits: a `split` field/column if the rows have one, else the split folder the file or image sits in,
else the writer's deterministic split by image. Paths in metadata are relative to the metadata file's
folder. Several rows for one image add captions (CSV files usually have one row per caption).
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from latentdiff.data.confine import FOLLOW_HINT, escape_reason, require_inside
from latentdiff.data.reader_common import (IGNORED_DIRS, IMAGE_EXTENSIONS, SPLIT_ALIASES, Entry, NotUTF8Error,
                                           display, duplicate_caption, normalise_split, read_text, shorten,
                                           to_items)
from latentdiff.data.writer import Skipped, SourceResult, clean_caption, is_prepared_output
from latentdiff.errors import UserError

METADATA_JSONL = "metadata.jsonl"
METADATA_CSV = "metadata.csv"
IMAGE_COLUMNS = ("file_name", "image", "filename", "file", "path", "image_path", "filepath", "img", "image_file")
CAPTION_COLUMNS = ("text", "caption", "captions", "prompt", "description", "sentence")
SPLIT_COLUMN = "split"
SIDECAR_EXTENSIONS = (".txt", ".caption")
LINKED_FOLDER = "symlinked folder, not read"
CSV_DELIMITERS = ",\t;|"


def read(path: str, *, follow_symlinks: bool = False) -> SourceResult:
    root = Path(path).expanduser()
    if root.is_file():
        root = root.parent
    skipped: list[Skipped] = []
    jsonl_files = metadata_files(root, METADATA_JSONL)
    csv_error = None
    if jsonl_files:
        layout, files = "metadata.jsonl", jsonl_files
        require_inside(files, root, follow_symlinks)
        entries = _merge([parse_jsonl(path, root, skipped) for path in jsonl_files], skipped)
    else:
        csv_files, csv_error = find_csv_files(root)
        if csv_files:
            layout, files = "csv", csv_files
            require_inside(files, root, follow_symlinks)
            entries = _merge([parse_csv(path, root, skipped) for path in csv_files], skipped)
        else:
            layout, files = "sidecars", []
            entries = parse_sidecars(root, skipped, follow_symlinks)
            if not entries:
                raise UserError(csv_error or (
                    f"{root} holds no captioned images: looked for {METADATA_JSONL} (in it or its train/, "
                    f"validation/, test/ folders), a CSV with image and caption columns, and images with "
                    f".txt sidecar captions; add captions in one of these forms."))
    items, dropped = to_items(entries, root, skipped, follow_symlinks)
    info = {"layout": layout, "layout_files": [display(p, root) for p in files],
            "split_origin": _split_origin(entries),
            "captions_over_limit_dropped": dropped}
    return SourceResult(source="folder", items=items, skipped=skipped, num_items=len(items), info=info)


def _split_origin(entries: list[Entry]) -> str:
    given = sum(1 for e in entries if e.split)
    if given == 0:
        return "hash of the image path"
    return "official" if given == len(entries) else "official where given, else hash of the image path"


def _split_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.lower() in SPLIT_ALIASES)


def metadata_files(root: Path, name: str) -> list[Path]:
    """`root/name` and `root/<split folder>/name`, the places `imagefolder` reads metadata from."""
    return [p for p in [root / name, *(d / name for d in _split_dirs(root))] if p.is_file()]


def _folder_split(path: Path, root: Path) -> str | None:
    """The split named by the top folder of `path` under `root` (`train/x/a.jpg` -> 'train')."""
    parts = Path(display(path, root)).parts
    return normalise_split(parts[0]) if len(parts) > 1 else None


def _pick(keys: list[str], wanted: tuple[str, ...]) -> str | None:
    lowered = {k.strip().lower(): k for k in keys}
    return next((lowered[w] for w in wanted if w in lowered), None)


def _captions_of(value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    return [clean_caption(v) for v in values if isinstance(v, str) and clean_caption(v)]


class _Rows:
    """Adds metadata rows to entries: resolves paths, splits, duplicates and empty captions."""

    def __init__(self, metadata: Path, root: Path, skipped: list[Skipped]):
        self.metadata, self.root, self.skipped = metadata, root, skipped
        self.entries: dict[str, Entry] = {}
        self.first_line: dict[str, int] = {}
        self.folder_split = _folder_split(metadata, root)
        self.origin = display(metadata, root)  # `train/metadata.jsonl`: several files share a name

    def add(self, number: int, image: Any, captions: Any, split: Any = None) -> None:
        item = f"{self.origin} line {number}"
        if not isinstance(image, str) or not image.strip():
            self.skipped.append(Skipped(item, "malformed line (no image file name)"))
            return
        path = self.metadata.parent / image.strip()
        # `train/../train/a.png` is `train/a.png`: one key, or the image would be kept twice. A name that
        # leaves the folder keeps its spelling, for the confinement reason (`to_items`).
        normal, base = Path(os.path.normpath(os.path.abspath(path))), Path(os.path.abspath(self.root))
        if normal.is_relative_to(base):
            path = self.root / normal.relative_to(base)
        key = display(path, self.root)
        # A root metadata file naming `test/a.png`: the image's split folder decides, as the docstring says.
        row_split = self.folder_split or _folder_split(path, self.root)
        if split is not None and str(split).strip():
            row_split = normalise_split(str(split))
            if row_split is None:
                self.skipped.append(Skipped(item, f"unknown split name ({split!r} for {image.strip()}; "
                                                  "expected train, validation or test)"))
                return
        texts = _captions_of(captions)
        if not texts:
            self.skipped.append(Skipped(item, f"empty caption (of {key})"))
            return
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = Entry(key=key, path=path, origin=self.origin, split=row_split)
            self.first_line[key] = number
        added = [entry.add_caption(t) for t in texts]
        if not any(added):
            self.skipped.append(Skipped(item, f"duplicate entry (line {self.first_line[key]} already gives "
                                              f"these captions of {key})"))
            return
        for text, new in zip(texts, added):
            if not new:
                self.skipped.append(duplicate_caption(item, entry, repr(shorten(text))))


def _line(path: Path, root: Path, number: int) -> str:
    return f"{display(path, root)} line {number}"


def parse_jsonl(path: Path, root: Path, skipped: list[Skipped]) -> list[Entry]:
    rows = _Rows(path, root, skipped)
    columns = None
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            skipped.append(Skipped(_line(path, root, number), f"malformed line ({err.msg}: {shorten(line)!r})"))
            continue
        if not isinstance(row, dict):
            skipped.append(Skipped(_line(path, root, number), f"malformed line (not a JSON object: {shorten(line)!r})"))
            continue
        if columns is None:  # the first row fixes the names, as imagefolder's schema does
            keys = list(row)
            columns = (_pick(keys, IMAGE_COLUMNS), _pick(keys, CAPTION_COLUMNS), _pick(keys, (SPLIT_COLUMN,)))
            if columns[0] is None or columns[1] is None:
                raise UserError(f"{display(path, root)} line {number} has the keys {', '.join(row) or 'none'}; "
                                f"name the image '{IMAGE_COLUMNS[0]}' and the captions '{CAPTION_COLUMNS[0]}'.")
        rows.add(number, row.get(columns[0]), row.get(columns[1]), row.get(columns[2]) if columns[2] else None)
    return list(rows.entries.values())


def _csv_header(path: Path) -> tuple[list[str], str]:
    """The header's cells and the delimiter: the one of `CSV_DELIMITERS` the header uses most (csv.Sniffer
    guesses quoting from one line too, and gets `"a ""b"", c"` wrong)."""
    first = next((line for line in read_text(path).splitlines() if line.strip()), "")
    delimiter = max(CSV_DELIMITERS, key=first.count) if any(d in first for d in CSV_DELIMITERS) else ","
    return next(csv.reader([first], delimiter=delimiter), []), delimiter


def find_csv_files(root: Path) -> tuple[list[Path], str | None]:
    """The CSV files to read (metadata.csv in split folders, or the CSVs at PATH whose header has an image
    and a caption column), and, when none qualifies, a sentence naming the columns that were found."""
    split_csvs = [p for p in metadata_files(root, METADATA_CSV) if p.parent != root]
    top = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
    candidates = split_csvs + ([root / METADATA_CSV] if root / METADATA_CSV in top else top)
    matching, problems = [], []
    for path in candidates:
        header, _ = _csv_header(path)
        if _pick(header, IMAGE_COLUMNS) and _pick(header, CAPTION_COLUMNS):
            matching.append(path)
        else:
            problems.append(f"{display(path, root)} has the columns {', '.join(header) or 'none'}")
    if len([p for p in matching if p.parent == root]) > 1:
        raise UserError(f"{root} holds several CSV files with image and caption columns "
                        f"({', '.join(p.name for p in matching)}); keep one, or rename the one to use {METADATA_CSV}.")
    error = None
    if problems and not matching:
        error = (f"{'; '.join(problems)}, but an image column ({', '.join(IMAGE_COLUMNS[:4])}, ...) and a caption "
                 f"column ({', '.join(CAPTION_COLUMNS[:4])}, ...) are needed; rename them.")
    return matching, error


def parse_csv(path: Path, root: Path, skipped: list[Skipped]) -> list[Entry]:
    header, delimiter = _csv_header(path)
    image_col = header.index(_pick(header, IMAGE_COLUMNS))
    caption_col = header.index(_pick(header, CAPTION_COLUMNS))
    split_name = _pick(header, (SPLIT_COLUMN,))
    split_col = header.index(split_name) if split_name else None
    rows = _Rows(path, root, skipped)
    # read_text, not open(errors="replace"): by byte order mark or strict UTF-8, never garbled captions.
    with io.StringIO(read_text(path), newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        next(reader, None)  # the header (leading blank lines are skipped by the reader's empty rows)
        start = reader.line_num + 1
        try:
            for row in reader:
                number, start = start, reader.line_num + 1
                if not row or not any(cell.strip() for cell in row):
                    continue
                if row == header:
                    continue
                if len(row) != len(header):
                    skipped.append(Skipped(_line(path, root, number), f"malformed line (expected {len(header)} "
                                                                    f"columns, got {len(row)})"))
                    continue
                rows.add(number, row[image_col], row[caption_col], row[split_col] if split_col is not None else None)
        except csv.Error as err:
            skipped.append(Skipped(_line(path, root, start),
                                   f"malformed CSV (from here on, the rest of the file was not read: {err})"))
    return list(rows.entries.values())


def _linked_dirs(directory: str, dirnames: list[str], root: Path, skipped: list[Skipped], follow_symlinks: bool,
                 visited: set[str]) -> list[str]:
    """`dirnames` less the symlinked folders not to walk, each recorded: all of them without
    --follow-symlinks (as a linked image file outside is), and with it those already walked (a link loop,
    or a second way to the same folder), so nothing under them goes unmentioned."""
    keep = []
    # Real folders claim their place first, so `alias -> train` is the one passed over, not `train`.
    for name in sorted(dirnames, key=lambda d: (os.path.islink(os.path.join(directory, d)), d)):
        path = Path(directory) / name
        real = os.path.realpath(path)
        if path.is_symlink() and not follow_symlinks:
            skipped.append(Skipped(display(path, root), f"{LINKED_FOLDER}; {FOLLOW_HINT} "
                                                        f"({display(path, root)} -> {real})"))
        elif real in visited:
            skipped.append(Skipped(display(path, root), f"folder already read (a symlink loop, or two ways to one "
                                                        f"folder: {display(path, root)} is {real})"))
        else:
            visited.add(real)
            keep.append(name)
    return sorted(keep)


def _sidecar(directory: str, stem: str, names: set[str], lowered: dict[str, str]) -> Path | None:
    """`stem.txt` (or `.caption`) beside the image, in any case (`a.TXT` from Windows or a camera), the
    exact name first. `lowered`: the folder's file names by their lower case."""
    for ext in SIDECAR_EXTENSIONS:
        wanted = f"{stem}{ext}"
        found = wanted if wanted in names else lowered.get(wanted.lower())
        if found is not None:
            return Path(directory) / found
    return None


def parse_sidecars(root: Path, skipped: list[Skipped], follow_symlinks: bool = False) -> list[Entry]:
    entries = []
    visited = {os.path.realpath(root)}
    for directory, dirnames, filenames in os.walk(root, followlinks=follow_symlinks):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in IGNORED_DIRS]
        for name in [d for d in dirnames if is_prepared_output(Path(directory) / d)]:
            # `prepare-data folder mine --out mine/prepared`, run again: its own output is no source
            dirnames.remove(name)
            skipped.append(Skipped(display(Path(directory) / name, root), "a dataset prepare-data wrote, not read "
                                                                          "as source images"))
        dirnames[:] = _linked_dirs(directory, dirnames, root, skipped, follow_symlinks, visited)  # sorted
        for name in dirnames:
            if name.lower().endswith(IMAGE_EXTENSIONS):  # `x.png/`: say so rather than pass over it
                path = Path(directory) / name
                skipped.append(Skipped(display(path, root), f"a folder, not an image file ({display(path, root)})"))
        names = set(filenames)
        lowered: dict[str, str] = {}
        for name in sorted(filenames):
            lowered.setdefault(name.lower(), name)
        for name in sorted(filenames):
            if not name.lower().endswith(IMAGE_EXTENSIONS) or name.startswith("."):
                continue
            path = Path(directory) / name
            key = display(path, root)
            stem = Path(name).stem
            sidecar = _sidecar(directory, stem, names, lowered)
            if sidecar is None:
                skipped.append(Skipped(key, f"no caption file ({stem}.txt beside it)"))
                continue
            outside = escape_reason(sidecar, root, follow_symlinks)
            if outside:
                skipped.append(Skipped(key, f"caption file: {outside}"))
                continue
            try:
                text = read_text(sidecar)
            except NotUTF8Error as err:  # this image only: the others' captions are fine
                skipped.append(Skipped(key, f"caption file is not UTF-8 text: save it as UTF-8 "
                                            f"({display(sidecar, root)}{', ' + err.where if err.where else ''})"))
                continue
            entry = Entry(key=key, path=path, origin=display(sidecar, root), split=_folder_split(path, root))
            for number, line in enumerate(text.splitlines(), start=1):
                if line.strip() and not entry.add_caption(line):
                    skipped.append(duplicate_caption(_line(sidecar, root, number), entry))
            entries.append(entry)
    if not entries:
        linked = [s.item for s in skipped if s.reason.startswith(LINKED_FOLDER)]
        if linked:  # the images may all be behind the links: say what reads them
            raise UserError(f"{root} has no captioned images outside its symlinked folders ({', '.join(linked)}); "
                            f"pass --follow-symlinks to read them.")
        skipped.clear()  # nothing captioned at all: the caller says so in one sentence instead
    return entries


def _merge(parts: list[list[Entry]], skipped: list[Skipped]) -> list[Entry]:
    """Entries of several metadata files; an image named by two files keeps the first one's entry."""
    merged: dict[str, Entry] = {}
    for entries in parts:
        for entry in entries:
            if entry.key in merged:
                first = merged[entry.key].origin
                skipped.append(Skipped(entry.key, f"duplicate entry (named in {first} and {entry.origin})"))
                continue
            merged[entry.key] = entry
    return list(merged.values())
