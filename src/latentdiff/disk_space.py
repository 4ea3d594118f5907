"""A full disk, told as one sentence: which device (and where it is mounted), for which output, and
roughly how many MB that output needs.

Writers do not agree on how they report a full disk: Python's own file writes raise OSError(ENOSPC),
safetensors raises SafetensorError("... No space left on device (os error 28)"), and torch.save raises a
RuntimeError about a stream position that never mentions the disk. So a failure counts as "disk full"
when its errno or text says so, or when the disk has less free space than the output needs.
"""

from __future__ import annotations

import errno
import math
import os
import shutil
from pathlib import Path

NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# How the Rust writers (safetensors) and C++ ones spell ENOSPC / EDQUOT in their messages.
NO_SPACE_TEXTS = ("no space left on device", "os error 28", "disk quota exceeded", "os error 122")
BYTES_PER_MB = 1_000_000
MOUNTS_FILE = "/proc/self/mounts"


def _causes(err: BaseException):
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def free_bytes(path: str | Path) -> int | None:
    """Free bytes on the filesystem holding `path` (its nearest existing ancestor); None if unknown."""
    try:
        return shutil.disk_usage(_existing_ancestor(Path(path))).free
    except OSError:
        return None


def is_disk_full(err: BaseException, path: str | Path, needed_bytes: int) -> bool:
    """True when writing `needed_bytes` under `path` failed with `err` because the disk (or quota) is full."""
    for cause in _causes(err):
        if getattr(cause, "errno", None) in NO_SPACE_ERRNOS:
            return True
        if any(text in str(cause).lower() for text in NO_SPACE_TEXTS):
            return True
    free = free_bytes(path)
    return free is not None and free < needed_bytes


def _existing_ancestor(path: Path) -> Path:
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def mount_of(path: str | Path) -> tuple[str, Path]:
    """(device, mount point) of the filesystem holding `path`: the mount point is the highest ancestor on
    the same st_dev; the device is what /proc/self/mounts lists for it (the mount point where unknown)."""
    path = _existing_ancestor(Path(path)).resolve()
    device = path.stat().st_dev
    mount = path
    while mount != mount.parent and mount.parent.stat().st_dev == device:
        mount = mount.parent
    name = str(mount)
    try:
        with open(MOUNTS_FILE, encoding="utf-8") as handle:
            for line in handle:  # later lines are mounted over earlier ones: keep the last match
                fields = line.split()
                if len(fields) > 1 and fields[1].replace("\\040", " ") == str(mount):
                    name = fields[0]
    except OSError:
        pass
    return name, mount


def no_space_sentence(path: str | Path, what: str, needed_bytes: int) -> str:
    """"No space left on DEVICE (mounted at MOUNT) for WHAT; about N MB needed (M MB free)": the start of
    the sentence a caller finishes with what to do."""
    device, mount = mount_of(path)
    where = device if device == str(mount) else f"{device} (mounted at {mount})"
    needed_mb = max(1, math.ceil(needed_bytes / BYTES_PER_MB))
    free = free_bytes(path)
    free_text = f" ({free // BYTES_PER_MB} MB free)" if free is not None else ""
    return f"No space left on {where} for {what}; about {needed_mb} MB needed{free_text}"


def remove_new_entries(folder: Path, before: set[str]) -> None:
    """Delete what appeared in `folder` since `before` (its entry names then): a failed write's leftovers."""
    for entry in folder.iterdir():
        if entry.name in before:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            try:
                os.unlink(entry)
            except OSError:
                pass
