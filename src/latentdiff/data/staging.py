"""The temp folder a prepared dataset is written into before it is renamed to `--out`, and the cleaning
of the ones a killed run left behind.

A temp folder is `.OUT.tmp-HOST-PID-TOKEN` beside OUT, made with `os.mkdir` (so it, and OUT after the
rename, get the permissions the user's umask gives, like `mkdir`; `tempfile.mkdtemp` forces 0700). The
writer touches it at least every `HEARTBEAT_S` seconds while it works. On the next run, a temp folder of
the same OUT is removed when its writer is gone: same host and that process no longer exists, or no
heartbeat for `STALE_AFTER_S` (another host sharing the disk, a reused PID, or a folder from a version
that did not name its writer). A concurrent run on the same OUT keeps its folder: its process is alive
and it keeps touching the folder.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import time
from pathlib import Path

HEARTBEAT_S = 60.0
# A live writer touches its folder every minute, so a day without a touch is a writer that is gone.
STALE_AFTER_S = 24 * 3600.0


def _host() -> str:
    # Only [A-Za-z0-9_] so the name parses back unambiguously (hostnames hold '.' and '-').
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"


def _prefix(out: Path) -> str:
    return f".{out.name}.tmp-"


def make_temp_dir(out: Path) -> Path:
    """A new, empty temp folder beside `out`, named after this host and process."""
    while True:
        tmp = out.parent / f"{_prefix(out)}{_host()}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            tmp.mkdir()  # mode 0777 & ~umask, like mkdir(1)
            return tmp
        except FileExistsError:
            continue


class Heartbeat:
    """Touches a temp folder while its writer works, at most once per `HEARTBEAT_S`."""

    def __init__(self, folder: Path):
        self.folder, self.last = folder, time.monotonic()

    def beat(self) -> None:
        if time.monotonic() - self.last >= HEARTBEAT_S:
            os.utime(self.folder)
            self.last = time.monotonic()


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def is_stale(folder: Path, out: Path, now_s: float | None = None) -> bool:
    """Whether `folder` (a `.OUT.tmp-*` of `out`) was left by a writer that is gone."""
    match = re.fullmatch(re.escape(_prefix(out)) + r"(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-[0-9a-f]+", folder.name)
    if match and match["host"] == _host():
        pid = int(match["pid"])
        # Our own PID on a folder we did not make: a killed run whose PID came back (containers start at 1).
        if pid == os.getpid() or not _process_exists(pid):
            return True
    try:
        age_s = (time.time() if now_s is None else now_s) - folder.lstat().st_mtime
    except FileNotFoundError:
        return False  # another run removed it first
    return age_s > STALE_AFTER_S


def remove_stale_temp_dirs(out: Path) -> list[Path]:
    """Remove the temp folders of `out` whose writer is gone; return them. Other folders, links and
    files are left alone."""
    removed = []
    try:
        candidates = [Path(e.path) for e in os.scandir(out.parent)
                      if e.name.startswith(_prefix(out)) and e.is_dir(follow_symlinks=False)]
    except OSError:
        return removed
    for folder in sorted(candidates):
        if is_stale(folder, out):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
