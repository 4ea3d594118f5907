"""Keeping `prepare-data` inside the dataset folder the user gave.

A dataset names files (`metadata.jsonl`'s `file_name`, a CSV's image column, COCO's `file_name`, a
Flickr8k caption line) and holds files that may be symlinks. Reading `../../../etc/passwd`, `/home/x.png`
or a link to outside would copy files that are not part of the dataset into it (captions and bad lines
are quoted in manifest.json). So:

- a name that leaves its folder lexically (`..` past the top, an absolute path) is always refused: no
  dataset needs it, and a downloaded one that has it is hostile or broken;
- a file that is inside by name but is (or sits under) a symlink to outside the dataset folder is
  refused unless the user passes `--follow-symlinks` (images kept on another disk and linked in).

Images and sidecar captions that break a rule are skipped with the reason; a caption or metadata file
that does is one sentence (the whole layout would be read from outside).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from latentdiff.errors import UserError

FOLLOW_HINT = "pass --follow-symlinks to read it"


def _inside(path: str, folder: str) -> bool:
    return Path(path).is_relative_to(folder)


def escape_reason(path: Path, dataset_folder: Path, follow_symlinks: bool, *, names_folder: Path | None = None,
                  named_in: str = "") -> str | None:
    """Why reading `path` would leave `dataset_folder` (a manifest reason), or None when it stays inside.
    `names_folder`: the folder the dataset's names are relative to (default: the dataset folder);
    `named_in`: the file that named `path`, for the message."""
    where = f", named in {named_in}" if named_in else ""
    names_folder = names_folder or dataset_folder
    if not _inside(os.path.normpath(os.path.abspath(path)), os.path.abspath(names_folder)):
        return f"path leaves the dataset folder; name files inside it, without '..' or a leading '/' ({path}{where})"
    if not follow_symlinks:
        real = os.path.realpath(path)
        if not _inside(real, os.path.realpath(dataset_folder)):
            return f"symlink to outside the dataset folder; {FOLLOW_HINT} ({path} -> {real}{where})"
    return None


def require_inside(paths: Iterable[Path], dataset_folder: Path, follow_symlinks: bool) -> None:
    """Caption and metadata files: one sentence for the first that would be read from outside."""
    for path in paths:
        real = os.path.realpath(path)
        if not follow_symlinks and not _inside(real, os.path.realpath(dataset_folder)):
            raise UserError(f"{path} is a symlink to {real}, outside the dataset folder {dataset_folder}; "
                            f"copy the file into the folder or {FOLLOW_HINT}.")
