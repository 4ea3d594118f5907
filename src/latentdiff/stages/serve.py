"""`latentdiff serve [--model M] [--host 127.0.0.1] [--port 7860] [--api-key-file F] [--max-queue N]`.

Loads the pipeline once, starts the one worker thread that owns it, and serves on uvicorn:
- `/`            the web page (prompt, settings, live preview, cancel, gallery with downloads)
- `/api/...`     latentdiff's job API (the page uses it; progress as server-sent events)
- `/sdapi/v1/..` the AUTOMATIC1111-compatible API
- `/v1/images/generations`  the OpenAI-compatible API
- `/docs`        the OpenAPI schema, browsable
The server binds to 127.0.0.1 unless told otherwise, and refuses another address without an API key
unless told `--insecure-no-key` (as Jupyter does); there is no config file to save (the key must not be
written anywhere), so the resolved settings are printed instead.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
from pathlib import Path

from latentdiff.config import ServeConfig
from latentdiff.options import run_stage
from latentdiff.processes import registered
from latentdiff.errors import UserError

# The server, uvicorn and the pipeline: imported inside the functions that use them, so `--help` and a wrong option
# are answered before their ~9 s of imports (the CLI imports this module only to run it).

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
    if cfg.max_request_cost is not None and not cfg.max_request_cost > 0:
        raise UserError(f"--max-request-cost must be above 0 megapixel-steps (got {cfg.max_request_cost}).")
    if not cfg.max_job_seconds > 0:
        raise UserError(f"--max-job-seconds must be above 0 (got {cfg.max_job_seconds}).")
    if cfg.models_dir and not Path(cfg.models_dir).expanduser().is_dir():  # before the model loads
        raise UserError(f"--models-dir {cfg.models_dir} is not a folder; pass the folder that holds your pipeline "
                        f"folders (e.g. runs/).")


def resolve_api_key(cfg: ServeConfig) -> str:
    """--api-key, else the content of --api-key-file, else $LATENTDIFF_API_KEY, else "" (no key)."""
    if cfg.api_key and cfg.api_key_file:
        raise UserError("Give the API key once: --api-key or --api-key-file, not both.")
    if not cfg.api_key_file:
        return cfg.api_key or os.environ.get(API_KEY_ENV, "").strip()
    try:
        key = Path(cfg.api_key_file).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or "not UTF-8 text"
        raise UserError(f"Cannot read --api-key-file {cfg.api_key_file} ({reason}); give a text file that holds "
                        f"the key.") from None
    if not key:
        raise UserError(f"--api-key-file {cfg.api_key_file} is empty; write the key into it.")
    return key


def check_exposure(cfg: ServeConfig, api_key: str) -> None:
    """Refuse to serve the model to the network without a key unless the user said so (as Jupyter does)."""
    from latentdiff.server.hosts import is_loopback

    if is_loopback(cfg.host) or api_key:
        return
    if not cfg.insecure_no_key:
        raise UserError(f"--host {cfg.host} lets every machine that can reach this one use the model, so it needs "
                        f"an API key: pass --api-key-file PATH or set ${API_KEY_ENV} (or --insecure-no-key to serve "
                        f"without one).")
    print(f"latentdiff serve: warning: listening on {cfg.host} without an API key (--insecure-no-key): anyone who "
          f"can reach this machine can use the model.", file=sys.stderr)


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
    from latentdiff.server.hosts import HostPolicy
    from latentdiff.server.jobs import JobQueue
    from latentdiff.runtime import pick_num_threads

    queue = JobQueue(None, max_queue=cfg.max_queue, max_batch_images=cfg.max_batch,
                     max_job_seconds=cfg.max_job_seconds)
    # picked now, before loading raises the load average; set by each load in the worker thread that generates
    threads = pick_num_threads(cfg.threads)
    queue.start(load_engine=lambda: PipelineEngine.load(cfg.model, cfg.device, cfg.backend, threads))  # the worker owns the model

    def load_model(path: Path, name: str) -> PipelineEngine:
        # the name the model list gives it (it differs from the folder's when two folders share one)
        engine = PipelineEngine.load(str(path), cfg.device, cfg.backend, threads)
        engine.text_to_image.source = dataclasses.replace(engine.text_to_image.source, name=name)
        return engine

    app = create_app(queue, api_key=api_key, hosts=HostPolicy(cfg.host, cfg.allowed_hosts),
                     max_request_cost=cfg.max_request_cost, models_dir=cfg.models_dir, load_model=load_model)
    return app, queue


def run(cfg: ServeConfig) -> None:
    check_config(cfg)
    api_key = resolve_api_key(cfg)
    check_exposure(cfg, api_key)
    if cfg.api_key:
        print(f"latentdiff serve: note: --api-key is visible to every user of this machine (ps); prefer "
              f"--api-key-file or ${API_KEY_ENV}.", file=sys.stderr)

    import uvicorn

    sock = open_socket(cfg.host, cfg.port)
    app, queue = build(cfg, api_key)
    port = sock.getsockname()[1]
    shown_host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    engine = queue.engine
    others = len(app.state.latentdiff.models) - 1
    shown_models = f" (+{others} more model{'s' if others > 1 else ''} in {cfg.models_dir})" if others else ""
    server = uvicorn.Server(uvicorn.Config(app, log_level="info", timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S))
    url = f"http://{shown_host}:{port}/"
    try:
        # listed by `latentdiff ps` from before it says it is up; `latentdiff stop` sends SIGINT, as Ctrl-C does
        with registered("server", engine.model_name, device=str(engine.text_to_image.device), path=str(engine.text_to_image.source.path),
                        url=url):
            print(f"latentdiff serve: {engine.model_name} [{engine.model_hash}]{shown_models} on {url} "
                  f"(API docs: /docs; queue {cfg.max_queue}, batches of up to {cfg.max_batch} images; requests up to "
                  f"{app.state.latentdiff.max_request_cost:.1f} megapixel-steps, jobs up to {cfg.max_job_seconds:g} s; "
                  f"API key {'required' if api_key else 'off'})", flush=True)
            server.run(sockets=[sock])
    finally:
        queue.close()
        sock.close()


def main(argv: list[str] | None = None) -> int:
    return run_stage(run, ServeConfig, argv, "latentdiff serve", DESCRIPTION)
