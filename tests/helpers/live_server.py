"""`latentdiff serve` as a real process on 127.0.0.1 and a free port, for e2e tests and benchmarks.

    with live_server(model_dir, "--max-queue", "128") as server:
        httpx.post(server.url + "/sdapi/v1/txt2img", json={...})

The server is started with `--port 0` (the OS picks a free port, so parallel runs never collide), the
URL is read from the line it prints at start, and it is stopped with SIGINT (Ctrl-C) at the end.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

_URL = re.compile(r"on (http://127\.0\.0\.1:\d+)/")
START_TIMEOUT_S = 180  # importing torch + diffusers and loading the model on a busy 2-core machine


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen
    output: list[str] = field(default_factory=list)  # every line it printed (stdout and stderr)

    def log(self) -> str:
        return "".join(self.output[-200:])


@contextmanager
def live_server(model_dir: str | Path, *extra_args: str, start_timeout_s: float = START_TIMEOUT_S):
    command = [sys.executable, "-m", "latentdiff", "serve", "--model", str(model_dir), "--host", "127.0.0.1",
               "--port", "0", *extra_args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: queue.Queue[str | None] = queue.Queue()
    output: list[str] = []

    def pump() -> None:  # keep draining the pipe so the server never blocks on a full one
        for line in process.stdout:
            output.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    url = None
    deadline = time.monotonic() + start_timeout_s
    while url is None and time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1.0)
        except queue.Empty:
            continue
        if line is None:
            break
        match = _URL.search(line)
        if match:
            url = match.group(1)
    if url is None:
        process.kill()
        process.wait()
        raise RuntimeError("latentdiff serve did not start:\n" + "".join(output[-50:]))
    server = LiveServer(url, process, output)
    try:
        yield server
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
