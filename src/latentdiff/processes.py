"""The long-lived latentdiff processes of this user, for `latentdiff ps` and `latentdiff stop` (as
`ollama ps` / `ollama stop`).

A process that outlives one command (a `generate` keep-alive worker, a `latentdiff serve`) leaves a card,
`<kind>-<pid>.card.json`, in the private runtime folder the keep-alive sockets use (0700, this user's
only), and removes it when it ends. A card whose process is gone (killed with SIGKILL, the machine
rebooted, the pid reused by another program) is stale: listing removes it. Memory is the process's
resident set, read when listed (/proc on Linux, `ps` elsewhere).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

CARD_SUFFIX = ".card.json"
RUNTIME_DIR_ENV = "LATENTDIFF_RUNTIME_DIR"  # where cards and sockets live (default: $XDG_RUNTIME_DIR/latentdiff)
STOP_WAIT_S = 15.0  # a worker finishes the generate it is running before it exits; then SIGTERM


def runtime_dir() -> Path | None:
    """A real folder (no symlink) that only this user can open, created 0700; None when there is none."""
    base = os.environ.get(RUNTIME_DIR_ENV)
    if base:
        folder = Path(base)
    elif os.environ.get("XDG_RUNTIME_DIR"):
        folder = Path(os.environ["XDG_RUNTIME_DIR"]) / "latentdiff"
    else:
        folder = Path(tempfile.gettempdir()) / f"latentdiff-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(folder)
    except OSError:
        return None
    # someone else's folder, a symlink to one, or a folder others can write must not receive our requests
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        return None
    return folder


def _start_ticks(pid: int) -> str | None:
    """When `pid` started (clock ticks since boot, Linux), so a reused pid is not taken for ours."""
    try:
        proc_stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return proc_stat.rsplit(")", 1)[1].split()[19]  # field 22; the name in parentheses may hold spaces


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or another user's process took the pid
        return False
    try:  # an exited child its parent has not reaped yet (a zombie) still answers kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def resident_bytes(pid: int) -> int | None:
    """The resident memory of `pid` in bytes, or None when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    try:  # macOS and the BSDs: no /proc
        out = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True, timeout=5).stdout
        return int(out.strip()) * 1024 if out.strip() else None
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


class Card:
    """This process's card: `update` rewrites it (atomically) when what it shows changes."""

    def __init__(self, path: Path | None, fields: dict[str, Any]):
        self.path, self.fields = path, fields

    def update(self, **fields: Any) -> None:
        self.fields.update(fields)
        if self.path is None:
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with contextlib.suppress(OSError):  # a card is a courtesy to `ps`; never fail the real work for it
            tmp.write_text(json.dumps(self.fields, sort_keys=True))
            os.replace(tmp, self.path)


@contextlib.contextmanager
def registered(kind: str, model: str, **fields: Any) -> Iterator[Card]:
    """While inside, this process is listed by `latentdiff ps` as a `kind` ("worker", "server") holding
    `model`; `fields` are shown too (device, url, until)."""
    folder = runtime_dir()
    pid = os.getpid()
    path = folder / f"{kind}-{pid}{CARD_SUFFIX}" if folder is not None else None
    card = Card(path, {"kind": kind, "pid": pid, "start": _start_ticks(pid), "model": model,
                       "started_at": time.time(), **fields})
    card.update()
    try:
        yield card
    finally:
        if path is not None:
            path.unlink(missing_ok=True)


def running() -> list[dict[str, Any]]:
    """The cards of the processes that still run, oldest first, each with its "memory_bytes"; stale
    cards are removed."""
    folder = runtime_dir()
    cards = []
    for path in sorted(folder.glob(f"*{CARD_SUFFIX}")) if folder is not None else ():
        try:
            card = json.loads(path.read_text())
            pid = int(card["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being written, or not ours to judge
        if not _is_alive(pid) or (card.get("start") and _start_ticks(pid) not in (None, card["start"])):
            path.unlink(missing_ok=True)
            continue
        card["memory_bytes"] = resident_bytes(pid)
        card["card"] = str(path)
        cards.append(card)
    return sorted(cards, key=lambda c: c.get("started_at", 0))


def stop(card: dict[str, Any], wait_s: float = STOP_WAIT_S,
         ask_worker: Callable[[Path], bool] | None = None) -> bool:
    """End the process of `card`: a worker is asked over its socket (it finishes what it is running), a
    server gets SIGINT, as from Ctrl-C (uvicorn shuts down gracefully, then the server cleans up: after a
    SIGTERM uvicorn re-raises it and the process dies before its own clean-up); SIGTERM after `wait_s`.
    True once it is gone. `ask_worker(socket_path)` asks a worker to exit (keep_alive.ask_to_stop; its
    protocol is keep_alive's own), False when none listened."""
    pid = int(card["pid"])
    asked = False
    if card.get("kind") == "worker" and card.get("socket") and ask_worker is not None:
        asked = ask_worker(Path(card["socket"]))
    if not asked:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + wait_s
    while _is_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _is_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        time.sleep(1.0)
    if _is_alive(pid):
        return False
    if card.get("card"):  # a process ended by a signal had no chance to remove its card
        Path(card["card"]).unlink(missing_ok=True)
    return True
