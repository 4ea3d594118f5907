"""An in-process `latentdiff serve` app (model loaded, worker started) behind FastAPI's TestClient.

    with server_client(tiny_pipeline_dir, max_queue=2) as (client, queue): ...

The client addresses the server as http://127.0.0.1:7860, as a browser on the same machine would.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

BASE_URL = "http://127.0.0.1:7860"


@contextmanager
def server_client(model_dir: str | Path, *, api_key: str = "", **config):
    from fastapi.testclient import TestClient

    from latentdiff.config import ServeConfig
    from latentdiff.stages.serve import build

    app, queue = build(ServeConfig(model=str(model_dir), **config), api_key)
    try:
        with TestClient(app, base_url=BASE_URL) as client:
            yield client, queue
    finally:
        queue.close()


@contextmanager
def threaded_server(app):
    """`app` served by uvicorn on 127.0.0.1 and a free port in a thread: for clients that make their own
    HTTP connections (webuiapi's requests, the openai package). Yields the base URL."""
    import threading
    import time

    import uvicorn

    from latentdiff.stages.serve import open_socket

    sock = open_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
