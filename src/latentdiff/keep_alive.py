"""Keep a loaded model warm between `latentdiff generate` calls (ollama's `keep_alive`, for one CLI).

A one-shot `latentdiff generate` on the 2-core development CPU spends ~9 of its ~11 s importing torch,
diffusers and transformers and loading the pipeline; denoising 4 images at 64x64 takes ~2 s. So after an
in-process run, `generate` starts a background worker that holds the loaded pipeline for `--keep-alive`
seconds (default 300) and listens on a Unix socket in a folder only this user can open. The next
`generate` with the same model, device, Python, latentdiff code and thread settings finds that socket,
sends its resolved config, and replays the worker's stdout and stderr; it never imports torch itself.
Each call restarts the worker's timer with its own `--keep-alive`; 0 stops the worker after answering.
One model stays warm at a time: a new worker stops the others (their memory, on a GPU too, comes back).

The worker runs exactly the in-process code (`stages.generate.run` with the preloaded pipeline, handed to
`serve` by its entry module `stages/generate_worker.py`: this module imports no stage and no torch), so a
seed gives the same pixels either way. When no worker answers (none, a stale socket, one that exits just
then), `generate` runs in process as before: the worker only ever saves time.

Wire protocol, one JSON object per line. Client: {"config": {...}, "cwd": ..., "keep_alive_s": S} or
{"stop": true}. Worker: {"accepted": true} when it starts on the request, {"stream": "stdout"|"stderr",
"text": ...} lines, then {"exit": status}.
"""

from __future__ import annotations

import contextlib
import fcntl  # POSIX only, as the Unix sockets are (_SUPPORTED)
import hashlib
import json
import math
import os
import select
import socket
import subprocess
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from latentdiff import processes
from latentdiff.config import GenerateConfig
from latentdiff.generation_defaults import BACKEND_ENV
from latentdiff.options import config_to_dict, run_reporting_errors
from latentdiff.processes import runtime_dir

DEFAULT_KEEP_ALIVE_S = 300.0  # ollama's default is 5 minutes too
MAX_KEEP_ALIVE_S = 24 * 3600.0
KEEP_ALIVE_ENV = "LATENTDIFF_KEEP_ALIVE"
PROG = "latentdiff generate"
MAX_SOCKET_PATH_BYTES = 100  # AF_UNIX paths are limited to 104-108 bytes depending on the OS
BUSY_NOTICE_AFTER_S = 2.0  # say why we wait when the worker has not started on our request by then
REQUEST_READ_TIMEOUT_S = 10.0  # a connection that sends no request in this long is dropped
# environment that changes what a worker would compute: a worker started under other values is not reused
_KEY_ENV = (BACKEND_ENV, "OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "HF_HOME", "HF_HUB_OFFLINE")
_PACKAGE_DIR = Path(__file__).resolve().parent
_SUPPORTED = os.name == "posix" and hasattr(socket, "AF_UNIX")


def keep_alive_seconds(cfg: GenerateConfig) -> float:
    """`--keep-alive`, else $LATENTDIFF_KEEP_ALIVE, else 300, within [0, 24 h]; 0 where there are no
    Unix sockets (Windows)."""
    if not _SUPPORTED:
        return 0.0
    value = cfg.keep_alive
    if value is None:
        try:
            value = float(os.environ.get(KEEP_ALIVE_ENV, DEFAULT_KEEP_ALIVE_S))
        except ValueError:
            value = DEFAULT_KEEP_ALIVE_S
    if math.isnan(value):
        return DEFAULT_KEEP_ALIVE_S
    return min(max(0.0, float(value)), MAX_KEEP_ALIVE_S)


# ------------------------------------------------------------------------------------ where workers live

def _code_fingerprint() -> str:
    """Changes whenever latentdiff's code does, so an edited or upgraded install never talks to an old worker."""
    stamps = sorted((str(p.relative_to(_PACKAGE_DIR)), p.stat().st_mtime_ns) for p in _PACKAGE_DIR.rglob("*.py"))
    return hashlib.sha256(json.dumps(stamps).encode()).hexdigest()


def _absolute_model(model: str | None) -> str | None:
    path = Path(model).expanduser() if model else None
    return str(path.resolve()) if path is not None and path.exists() else model


def worker_key(cfg: GenerateConfig) -> str:
    """Which worker may answer `cfg`: same model, device, Python, latentdiff code and thread settings."""
    parts = {"model": _absolute_model(cfg.model) or "bundled", "device": cfg.device or "auto",
             "backend": cfg.backend or "default", "threads": "auto" if cfg.threads is None else cfg.threads,
             "python": sys.executable, "code": _code_fingerprint(),
             "env": {name: os.environ.get(name, "") for name in _KEY_ENV}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def socket_path(key: str) -> Path | None:
    folder = runtime_dir()
    if folder is None:
        return None
    path = folder / f"{key}.sock"
    return path if len(os.fsencode(path)) <= MAX_SOCKET_PATH_BYTES else None


@contextlib.contextmanager
def _working_dir(folder: str):  # contextlib.chdir, which needs Python 3.11 (we support 3.10)
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def _send(connection: socket.socket, message: dict) -> None:
    connection.sendall(json.dumps(message).encode() + b"\n")


# ------------------------------------------------------------------------------------ client side

def _connect(path: Path) -> socket.socket | None:
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(str(path))
    except OSError:  # a stale socket of a worker that was killed: the next worker replaces it
        connection.close()
        return None
    return connection


def run_in_worker(cfg: GenerateConfig) -> int | None:
    """`cfg` answered by a warm worker: its exit status, or None when no worker took it (run in process)."""
    path = socket_path(worker_key(cfg)) if _SUPPORTED else None
    connection = _connect(path) if path is not None and path.exists() else None
    if connection is None:
        return None
    # the worker answers from this folder, so relative --out/--model and the printed paths read as in process
    request = {"config": config_to_dict(cfg), "cwd": os.getcwd(), "keep_alive_s": keep_alive_seconds(cfg)}
    accepted = False
    with connection, connection.makefile("rb") as replies:
        try:
            _send(connection, request)
            # select, not a socket timeout: a file object that once timed out refuses every later read
            if not select.select([connection], [], [], BUSY_NOTICE_AFTER_S)[0]:
                print(f"{PROG}: waiting for the background worker (it is loading the model or busy with another "
                      f"generate).", file=sys.stderr)
            line = replies.readline()
            while line:
                message = json.loads(line)
                if "exit" in message:
                    return int(message["exit"])
                accepted = accepted or bool(message.get("accepted"))
                if "text" in message:
                    stream = sys.stdout if message.get("stream") == "stdout" else sys.stderr
                    stream.write(message["text"])
                    stream.flush()
                line = replies.readline()
        except (OSError, ValueError):
            pass
        except KeyboardInterrupt:  # the worker notices the closed socket at its next progress line
            print(f"{PROG}: interrupted.", file=sys.stderr)
            return 130
    if accepted:  # it may have written images already: running again here would duplicate them
        print(f"{PROG}: error: the background worker stopped while generating (see {path.with_suffix('.log')}); "
              f"rerun with --keep-alive 0 to generate in this process.", file=sys.stderr)
        return 1
    return None  # it exited before taking the request: nothing happened, generate in process


def ask_to_stop(path: Path) -> bool:
    """Ask the worker on socket `path` to exit once it has answered what it is running; False if none listens."""
    connection = _connect(path)
    if connection is None:
        return False
    with connection, contextlib.suppress(OSError):
        _send(connection, {"stop": True})
    return True


def stop_other_workers(keep_key: str) -> None:
    """Ask every worker but `keep_key`'s to exit once it has answered what it is running."""
    folder = runtime_dir()
    for path in folder.glob("*.sock") if folder is not None else ():
        if path.stem != keep_key:
            ask_to_stop(path)


def start_worker(cfg: GenerateConfig, worker_module: str, threads: int | None = None) -> None:
    """Leave a detached worker holding `cfg`'s model for `--keep-alive` seconds (nothing when that is 0).
    `worker_module` is run as `python -m worker_module KEY MODEL DEVICE SECONDS BACKEND`; it calls `serve`."""
    keep_alive_s = keep_alive_seconds(cfg)
    key = worker_key(cfg) if keep_alive_s > 0 else ""
    path = socket_path(key) if key else None
    if path is None:
        return
    command = [sys.executable, "-m", worker_module, key, json.dumps(_absolute_model(cfg.model)),
               json.dumps(cfg.device), str(keep_alive_s), json.dumps(cfg.backend)]
    # the worker runs in the runtime folder: it must import this very latentdiff whatever PYTHONPATH says
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_PACKAGE_DIR.parent),
                                                                       os.environ.get("PYTHONPATH")]))}
    if threads:  # the count the starting call used: the worker's torch (and runtime sessions) start with it
        env["OMP_NUM_THREADS"] = str(threads)
    log_fd = os.open(path.with_suffix(".log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    with os.fdopen(log_fd, "ab") as log:  # the worker's own errors, if any, land here
        subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                         close_fds=True, cwd=path.parent, env=env)
    print(f"{PROG}: keeping the model loaded in a background worker for {keep_alive_s:g} s, so the next generate "
          f"starts at once (--keep-alive 0 or {KEEP_ALIVE_ENV}=0 turns this off).", file=sys.stderr)


# ------------------------------------------------------------------------------------ worker side

class _FrameWriter:
    """A text stream whose writes travel to the client as {"stream": name, "text": ...} lines."""

    encoding = "utf-8"  # tqdm draws ASCII bars on streams without one

    def __init__(self, connection: socket.socket, name: str):
        self.connection, self.name = connection, name

    def write(self, text: str) -> int:
        if text:
            _send(self.connection, {"stream": self.name, "text": text})
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def _model_fingerprint(folder: Path) -> list[tuple[str, int, int]] | None:
    """Names, sizes and times of a pipeline folder's files; None when it cannot be read (so: changed)."""
    try:
        return sorted((str(p.relative_to(folder)), (info := p.stat()).st_size, info.st_mtime_ns)
                      for p in folder.rglob("*") if p.is_file())
    except OSError:
        return None


@dataclass(frozen=True)
class WorkerHooks:
    """What a worker runs, given by its entry module: `load(model, device, backend)` a TextToImage,
    `locate(model)` its folder (read before loading), `run(cfg, text_to_image=...)` one request's stage."""

    load: Callable[[str | None, str | None, str | None], Any]
    locate: Callable[[str | None], Path]
    run: Callable[..., Any]


class _Worker:
    def __init__(self, model: str | None, device: str | None, backend: str | None, hooks: WorkerHooks):
        self.model, self.device, self.backend, self.hooks = model, device, backend, hooks
        self.text_to_image = None
        self.fingerprint: list[tuple[str, int, int]] | None = None

    def loaded_text_to_image(self):
        """The pipeline, reloaded when its files changed on disk since it was loaded (a retrained model)."""
        folder = self.text_to_image.source.path if self.text_to_image is not None else self.hooks.locate(self.model)
        fingerprint = _model_fingerprint(folder)  # before loading: a re-export meanwhile shows next time
        if self.text_to_image is None or fingerprint is None or fingerprint != self.fingerprint:
            self.text_to_image = None  # free the old weights before loading the new ones
            self.text_to_image = self.hooks.load(self.model, self.device, self.backend)
            self.fingerprint = fingerprint
        return self.text_to_image

    def answer(self, connection: socket.socket) -> float | None:
        """Run one request; returns the keep-alive it asked for (None: a stop request)."""
        connection.settimeout(REQUEST_READ_TIMEOUT_S)
        with connection.makefile("rb") as requests:
            request = json.loads(requests.readline())
        connection.settimeout(None)
        if request.get("stop"):
            return None
        cfg = GenerateConfig(**request["config"])
        _send(connection, {"accepted": True})
        # warnings.catch_warnings resets the once-per-process registry: each call sees what it would in process
        with _working_dir(request["cwd"]), warnings.catch_warnings(), \
                contextlib.redirect_stdout(_FrameWriter(connection, "stdout")), \
                contextlib.redirect_stderr(_FrameWriter(connection, "stderr")):
            try:
                status = run_reporting_errors(lambda c: self.hooks.run(c, text_to_image=self.loaded_text_to_image()), cfg, PROG)
            except Exception:  # noqa: BLE001 - what the same call in process would have shown, then status 1
                traceback.print_exc()
                status = 1
        _send(connection, {"exit": status})
        return float(request["keep_alive_s"])

    def answer_safely(self, connection: socket.socket, keep_alive_s: float) -> float | None:
        """`answer`, except that a client that left (Ctrl-C) or sent junk keeps the current `keep_alive_s`."""
        with connection:
            try:
                return self.answer(connection)
            except (OSError, ValueError, KeyError, TypeError) as err:
                print(f"keep-alive worker: dropped a request ({err!r})", file=sys.stderr)
                return keep_alive_s


def serve(key: str, model: str | None, device: str | None, keep_alive_s: float, backend: str | None,
          hooks: WorkerHooks) -> int:
    """Answer generate requests on `key`'s socket until `keep_alive_s` pass without one."""
    path = socket_path(key)
    if path is None:
        return 1
    lock = open(path.with_suffix(".lock"), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # another worker already serves this key
        return 0
    # bind before the slow imports: a client that comes meanwhile waits in the backlog instead of
    # starting a second in-process run that would fight this one for the CPU
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(16)
    stop_other_workers(key)
    worker = _Worker(model, device, backend, hooks)
    # listed by `latentdiff ps` (while it loads too) until it exits
    with processes.registered("worker", model or "bundled", device=device or "auto", socket=str(path),
                              until=time.time() + keep_alive_s) as card:
        try:
            card.update(device=str(worker.loaded_text_to_image().device))
            deadline = time.monotonic() + keep_alive_s
            while (remaining := deadline - time.monotonic()) > 0:
                listener.settimeout(remaining)
                try:
                    connection, _ = listener.accept()
                except TimeoutError:
                    break
                asked = worker.answer_safely(connection, keep_alive_s)
                if asked is None:  # a stop request: `latentdiff stop`, or a newer worker holds another model
                    break
                keep_alive_s = asked
                deadline = time.monotonic() + keep_alive_s  # the latest call's keep-alive counts from now
                card.update(until=time.time() + keep_alive_s)
            path.unlink(missing_ok=True)  # no new clients; answer the ones already queued, then exit
            listener.settimeout(0.0)
            while True:
                try:
                    connection, _ = listener.accept()
                except (BlockingIOError, TimeoutError):
                    break
                worker.answer_safely(connection, 0.0)
        finally:
            path.unlink(missing_ok=True)
            listener.close()
            log = path.with_suffix(".log")
            if log.exists() and log.stat().st_size == 0:  # keep a log only when it says something
                log.unlink(missing_ok=True)
            lock.close()
    return 0
