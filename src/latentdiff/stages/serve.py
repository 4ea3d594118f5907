"""`latentdiff serve [--model M] [--host 127.0.0.1] [--port 7860] [--api-key K] [--max-queue N]`.

Loads the pipeline once, starts the one worker thread that owns it, and serves on uvicorn:
- `/`            the web page (prompt, settings, live preview, cancel, gallery with downloads)
- `/api/...`     latentdiff's job API (the page uses it; progress as server-sent events)
- `/sdapi/v1/..` the AUTOMATIC1111-compatible API
- `/v1/images/generations`  the OpenAI-compatible API
- `/docs`        the OpenAPI schema, browsable
The server binds to 127.0.0.1 unless told otherwise; there is no config file to save (the key must
not be written anywhere), so the resolved settings are printed instead.
"""

from __future__ import annotations

import os
import socket
import sys

from latentdiff.config import ServeConfig
from latentdiff.options import run_stage
from latentdiff.errors import UserError

DESCRIPTION = ("Serve a pipeline over HTTP: a web page, an AUTOMATIC1111-compatible API (/sdapi/v1) and an "
               "OpenAI-compatible one (/v1/images/generations), on 127.0.0.1 by default.")
API_KEY_ENV = "LATENTDIFF_API_KEY"
GRACEFUL_SHUTDOWN_S = 5  # open progress streams are closed after this on Ctrl-C


def check_config(cfg: ServeConfig) -> None:
    if not 0 <= cfg.port <= 65535:
        raise UserError(f"--port must be between 0 and 65535 (got {cfg.port}); 0 picks a free port.")
    if cfg.max_queue < 1:
        raise UserError(f"--max-queue must be at least 1 (got {cfg.max_queue}).")
    if cfg.max_batch < 1:
        raise UserError(f"--max-batch must be at least 1 (got {cfg.max_batch}).")


def open_socket(host: str, port: int) -> socket.socket:
    """A listening socket, opened before the model loads so a busy port fails fast."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except socket.gaierror as err:
        raise UserError(f"--host '{host}' is not an address this machine can listen on ({err.strerror}).") from None
    except OSError as err:
        raise UserError(f"Cannot listen on {host}:{port} ({err.strerror}); pick another --port "
                        f"(0 picks a free one).") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def build(cfg: ServeConfig, api_key: str):
    """Load the model, start the worker, make the app: (app, queue). Tests call this in-process."""
    from latentdiff.server.app import create_app
    from latentdiff.server.engine import PipelineEngine
    from latentdiff.server.jobs import JobQueue
    from latentdiff.server.security import is_loopback

    queue = JobQueue(None, max_queue=cfg.max_queue, max_batch_images=cfg.max_batch)
    queue.start(load_engine=lambda: PipelineEngine.load(cfg.model, cfg.device))  # the worker owns the model
    app = create_app(queue, api_key=api_key, check_loopback_host=is_loopback(cfg.host))
    return app, queue


def run(cfg: ServeConfig) -> None:
    import uvicorn

    from latentdiff.server.security import is_loopback

    check_config(cfg)
    api_key = cfg.api_key or os.environ.get(API_KEY_ENV, "")
    if not is_loopback(cfg.host) and not api_key:
        print(f"latentdiff serve: warning: listening on {cfg.host} without --api-key: anyone who can reach this "
              f"machine can use the model.", file=sys.stderr)
    sock = open_socket(cfg.host, cfg.port)
    app, queue = build(cfg, api_key)
    port = sock.getsockname()[1]
    shown_host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    engine = queue.engine
    print(f"latentdiff serve: {engine.model_name} [{engine.model_hash}] on http://{shown_host}:{port}/ "
          f"(API docs: /docs; queue {cfg.max_queue}, batches of up to {cfg.max_batch} images; "
          f"API key {'required' if api_key else 'off'})", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="info", timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S))
    try:
        server.run(sockets=[sock])
    finally:
        queue.close()
        sock.close()


def main(argv: list[str] | None = None) -> int:
    return run_stage(run, ServeConfig, argv, "latentdiff serve", DESCRIPTION)
