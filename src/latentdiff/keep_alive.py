"""Keep a loaded model warm between `latentdiff generate` calls (ollama's `keep_alive`, for one CLI).

A one-shot `latentdiff generate` on the 2-core development CPU spends ~9 of its ~11 s importing torch,
diffusers and transformers and loading the pipeline; denoising 4 images at 64x64 takes ~2 s. So after an
in-process run, `generate` starts a background worker that holds the loaded pipeline for `--keep-alive`
seconds (default 300) and listens on a Unix socket in a folder only this user can open. The next
`generate` with the same model, device, Python, latentdiff code and thread settings finds that socket,
sends its resolved config, and replays the worker's stdout and stderr; it never imports torch itself.
Each call restarts the worker's timer with its own `--keep-alive`; 0 stops the worker after answering.

The worker runs exactly the in-process code (`stages.generate.run` with the preloaded pipeline), so a
seed gives the same pixels either way. Anything unusual (no socket, a stale one, a worker that dies) makes
`generate` run in process as before: the worker only ever saves time.

Wire protocol, one JSON object per line: the client sends {"config": {...}, "keep_alive_s": S}; the
worker answers {"stream": "stdout"|"stderr", "text": "..."} lines, then {"exit": status}.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from latentdiff.config import GenerateConfig
from latentdiff.options import config_to_dict

DEFAULT_KEEP_ALIVE_S = 300.0  # ollama's default is 5 minutes too
KEEP_ALIVE_ENV = "LATENTDIFF_KEEP_ALIVE"
RUNTIME_DIR_ENV = "LATENTDIFF_RUNTIME_DIR"  # where sockets live (default: $XDG_RUNTIME_DIR/latentdiff)
PROG = "latentdiff generate"
MAX_SOCKET_PATH = 100  # AF_UNIX paths are limited to 104-108 bytes depending on the OS
# environment that changes what a worker would compute: a worker started under other values is not reused
_KEY_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "HF_HOME", "HF_HUB_OFFLINE")
_PACKAGE_DIR = Path(__file__).resolve().parent


def keep_alive_seconds(cfg: GenerateConfig) -> float:
    """`--keep-alive`, else $LATENTDIFF_KEEP_ALIVE, else 300; 0 on systems without Unix sockets."""
    if not hasattr(socket, "AF_UNIX"):
        return 0.0
    if cfg.keep_alive is not None:
        return max(0.0, float(cfg.keep_alive))
    try:
        return max(0.0, float(os.environ.get(KEEP_ALIVE_ENV, DEFAULT_KEEP_ALIVE_S)))
    except ValueError:
        return DEFAULT_KEEP_ALIVE_S


# ------------------------------------------------------------------------------------ where workers live

def runtime_dir() -> Path | None:
    """A folder only this user can open (created 0700), or None when there is no safe one."""
    base = os.environ.get(RUNTIME_DIR_ENV)
    if base:
        folder = Path(base)
    elif os.environ.get("XDG_RUNTIME_DIR"):
        folder = Path(os.environ["XDG_RUNTIME_DIR"]) / "latentdiff"
    else:
        folder = Path(tempfile.gettempdir()) / f"latentdiff-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.stat()
    except OSError:
        return None
    # a world-writable /tmp folder someone else created (or opened up) must not receive our requests
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        return None
    return folder


def _code_fingerprint() -> str:
    """Changes whenever latentdiff's code does, so an edited or upgraded install never talks to an old worker."""
    stamps = sorted((str(p.relative_to(_PACKAGE_DIR)), p.stat().st_mtime_ns) for p in _PACKAGE_DIR.rglob("*.py"))
    return hashlib.sha256(json.dumps(stamps).encode()).hexdigest()


def _absolute_model(model: str | None) -> str | None:
    path = Path(model).expanduser() if model else None
    return str(path.resolve()) if path is not None and path.exists() else model


@contextlib.contextmanager
def _working_dir(folder: str):
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def worker_key(cfg: GenerateConfig) -> str:
    """Which worker may answer `cfg`: same model, device, Python, latentdiff code and thread settings."""
    parts = {"model": _absolute_model(cfg.model) or "bundled", "device": cfg.device or "auto", "python": sys.executable,
             "code": _code_fingerprint(), "env": {name: os.environ.get(name, "") for name in _KEY_ENV}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def socket_path(key: str) -> Path | None:
    folder = runtime_dir()
    if folder is None:
        return None
    path = folder / f"{key}.sock"
    return path if len(str(path)) <= MAX_SOCKET_PATH else None


# ------------------------------------------------------------------------------------ client side

def run_in_worker(cfg: GenerateConfig) -> int | None:
    """`cfg` answered by a warm worker: its exit status, or None when no worker answered (run in process)."""
    if not hasattr(socket, "AF_UNIX"):
        return None
    path = socket_path(worker_key(cfg))
    if path is None or not path.exists():
        return None
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(str(path))
    except OSError:  # a stale socket of a worker that was killed: the next worker replaces it
        connection.close()
        return None
    # the worker answers from this folder, so relative --out/--model and the printed paths read as in process
    request = {"config": config_to_dict(cfg), "cwd": os.getcwd(), "keep_alive_s": keep_alive_seconds(cfg)}
    with connection, connection.makefile("rb") as replies:
        try:
            connection.sendall(json.dumps(request).encode() + b"\n")
            for line in replies:
                message = json.loads(line)
                if "exit" in message:
                    return int(message["exit"])
                stream = sys.stdout if message.get("stream") == "stdout" else sys.stderr
                stream.write(message.get("text", ""))
                stream.flush()
        except (OSError, ValueError):
            pass
    print(f"{PROG}: the background worker stopped before answering; generating in this process.", file=sys.stderr)
    return None


def start_worker(cfg: GenerateConfig) -> None:
    """Leave a detached worker holding `cfg`'s model for `--keep-alive` seconds (nothing when that is 0)."""
    keep_alive_s = keep_alive_seconds(cfg)
    if keep_alive_s <= 0:
        return
    key = worker_key(cfg)
    path = socket_path(key)
    if path is None:
        return
    command = [sys.executable, "-m", "latentdiff.keep_alive", key, json.dumps(_absolute_model(cfg.model)),
               json.dumps(cfg.device),
               str(keep_alive_s)]
    with open(path.with_suffix(".log"), "ab") as log:  # the worker's own errors, if any, land here
        subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                         close_fds=True, cwd=path.parent)
    print(f"{PROG}: the model stays loaded in a background worker for {keep_alive_s:g} s, so the next generate "
          f"starts at once (--keep-alive 0 or {KEEP_ALIVE_ENV}=0 turns this off).", file=sys.stderr)


# ------------------------------------------------------------------------------------ worker side

class _FrameWriter:
    """A text stream whose writes travel to the client as {"stream": name, "text": ...} lines."""

    encoding = "utf-8"  # tqdm draws ASCII bars on streams without one

    def __init__(self, connection: socket.socket, name: str):
        self.connection, self.name = connection, name

    def write(self, text: str) -> int:
        if text:
            self.connection.sendall(json.dumps({"stream": self.name, "text": text}).encode() + b"\n")
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def _model_fingerprint(folder: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in folder.rglob("*") if p.is_file())


class _Worker:
    def __init__(self, model: str | None, device: str | None):
        self.model, self.device = model, device
        self.pipeline = None
        self.fingerprint: list[tuple[str, int, int]] = []

    def loaded_pipeline(self):
        """The pipeline, reloaded when its files changed on disk since it was loaded (a retrained model)."""
        from latentdiff.pipeline import TextToImage

        if self.pipeline is None or _model_fingerprint(self.pipeline.source.path) != self.fingerprint:
            self.pipeline = TextToImage.load(self.model, self.device)
            self.fingerprint = _model_fingerprint(self.pipeline.source.path)
        return self.pipeline

    def answer(self, connection: socket.socket) -> float:
        """Run one request; returns the keep-alive it asked for."""
        from latentdiff.options import run_reporting_errors
        from latentdiff.stages.generate import run

        with connection.makefile("rb") as requests:
            request = json.loads(requests.readline())
        cfg = GenerateConfig(**request["config"])
        with _working_dir(request["cwd"]), contextlib.redirect_stdout(_FrameWriter(connection, "stdout")), \
                contextlib.redirect_stderr(_FrameWriter(connection, "stderr")):
            status = run_reporting_errors(lambda c: run(c, pipeline=self.loaded_pipeline()), cfg, PROG)
        connection.sendall(json.dumps({"exit": status}).encode() + b"\n")
        return float(request["keep_alive_s"])


def serve(key: str, model: str | None, device: str | None, keep_alive_s: float) -> int:
    """Answer generate requests on `key`'s socket until `keep_alive_s` pass without one."""
    import fcntl

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
    worker = _Worker(model, device)
    try:
        worker.loaded_pipeline()
        deadline = time.monotonic() + keep_alive_s
        while (remaining := deadline - time.monotonic()) > 0:
            listener.settimeout(remaining)
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                break
            connection.settimeout(None)
            with connection:
                try:
                    keep_alive_s = worker.answer(connection)
                except (OSError, ValueError, KeyError, TypeError) as err:  # a client that left or sent junk
                    print(f"keep-alive worker: dropped a request ({err!r})", file=sys.stderr)
            deadline = time.monotonic() + keep_alive_s
    finally:
        path.unlink(missing_ok=True)
        listener.close()
        log = path.with_suffix(".log")
        if log.exists() and log.stat().st_size == 0:  # keep a log only when it says something
            log.unlink(missing_ok=True)
        lock.close()
    return 0


if __name__ == "__main__":
    _key, _model, _device, _keep_alive = sys.argv[1:5]
    raise SystemExit(serve(_key, json.loads(_model), json.loads(_device), float(_keep_alive)))
