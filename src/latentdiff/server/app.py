"""The FastAPI application: the page, three APIs over one job queue, the guards, the error shapes.

`create_app(queue)` wires what the `serve` stage (or a test) built: a started `JobQueue` whose worker
thread owns the `PipelineEngine`. The app reads the engine's facts (model name, hash, defaults) and
asks it to check settings, but never runs the model itself.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from latentdiff import __version__
from latentdiff.server.budget import check_cost, default_max_cost
from latentdiff.server.errors import ApiError, install_error_handlers
from latentdiff.server.hosts import HostPolicy
from latentdiff.server.jobs import Job, JobParams, JobQueue, QueueFull
from latentdiff.server.models import ServedModel, discover_models, find_model
from latentdiff.server.security import GuardMiddleware, NoSniffMiddleware

STATIC_PACKAGE = "latentdiff.server"
# The page only loads its own script, style and images (previews are data: URLs, results blob: URLs).
PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


@dataclass
class ServerState:
    queue: JobQueue  # its `engine` (a PipelineEngine) is the model: name, hash, defaults, checks
    max_request_cost: float = math.inf  # megapixel-steps (budget.py)
    # the models clients may switch to (models.py); the first is the one loaded at start
    models: list[ServedModel] = field(default_factory=list)
    # builds an engine for a pipeline folder; runs on the worker thread (None: switching is off)
    load_model: Callable[[Path, str], object] | None = None
    models_dir: str | None = None
    default_budget: bool = False  # max_request_cost follows the loaded model's native size (no --max-request-cost)
    _switch_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def engine(self):
        return self.queue.engine

    @property
    def current_model(self) -> ServedModel:
        """The model the worker holds now (entry of `models` with its name)."""
        name = self.engine.model_name
        return next((m for m in self.models if m.name == name), None) or ServedModel(name, self.engine.tti.source.path)

    def refresh_models(self) -> None:
        """Look for pipeline folders in --models-dir again (A1111's refresh-checkpoints)."""
        current = self.current_model
        found = discover_models(current.path, current.name, self.models_dir)
        # the start model stays on offer even when another one is loaded now
        self.models = [*self.models[:1], *(m for m in found if m.path != self.models[0].path)] if self.models else found

    def switch_model(self, wanted: str) -> ServedModel:
        """Load the model called `wanted` (title, name or hash) on the worker, after the jobs already
        queued (they run on the model they were checked against). Blocks until it is loaded; call it
        off the event loop. 404 naming the choices when there is no such model."""
        model = find_model(self.models, wanted)
        if model is None:
            choices = ", ".join(f"'{m.title}'" for m in self.models)
            raise ApiError(404, f"sd_model_checkpoint: there is no model '{wanted}' on this server; choose one of: "
                                f"{choices} (GET /sdapi/v1/sd-models lists them).", "sd_model_checkpoint")
        with self._switch_lock:  # two switches at once would load twice
            if model.name == self.engine.model_name:
                return model
            if self.load_model is None:
                raise ApiError(409, "This server was started without model switching.", "sd_model_checkpoint")

            def load() -> None:
                # the new model is loaded before the old one is let go, so a failed load keeps serving
                self.queue.engine = self.load_model(model.path, model.name)
                if self.default_budget:
                    defaults = self.queue.engine.defaults
                    self.max_request_cost = default_max_cost(defaults.width, defaults.height)

            try:
                self.queue.run_on_worker(load)
            except QueueFull:
                raise ApiError(503, "The server is shutting down; no model can be loaded now.") from None
            except Exception as err:
                raise ApiError(500, f"Could not load the model '{model.name}' ({err}); the server keeps "
                                    f"'{self.engine.model_name}'.", "sd_model_checkpoint") from None
        return model

    def submit(self, params: JobParams, field_names: dict[str, str] | None = None) -> Job:
        """Check the settings against the model (422 naming the field) and the compute budget (413),
        then queue a job, or answer 429 with Retry-After when the queue is full. `field_names` maps
        latentdiff's names (`guidance`) to the calling API's (`cfg_scale`) for the error message."""
        params = dataclasses.replace(params, model=self.engine.model_name)  # the model it was checked against
        self.engine.check(params, field_names)
        check_cost(self.engine.cost(params), self.max_request_cost, field_names)
        try:
            return self.queue.submit(params)
        except QueueFull as full:
            raise ApiError(429, f"The queue is full ({self.queue.max_queue} jobs waiting); retry in "
                                f"{full.retry_after_s} s.", headers={"Retry-After": str(full.retry_after_s)}) from None


def get_state(request: Request) -> ServerState:
    return request.app.state.latentdiff


class _App(FastAPI):
    def build_middleware_stack(self):
        # outside FastAPI's own ServerErrorMiddleware, so even an unhandled error's 500 carries nosniff
        return NoSniffMiddleware(super().build_middleware_stack())


def create_app(queue: JobQueue, *, api_key: str = "", hosts: HostPolicy | None = None,
               max_request_cost: float | None = None, models_dir: str | None = None,
               load_model: Callable[[Path, str], object] | None = None) -> FastAPI:
    """`hosts`: the Host names to answer (default: loopback only); `max_request_cost`: megapixel-steps
    one request may ask for (default: budget.default_max_cost at the model's native size);
    `models_dir`: more pipeline folders clients may switch to, loaded by `load_model(path, name)`."""
    from latentdiff.server import api_a1111, api_native, api_openai
    from latentdiff.server.docs import install_docs

    app = _App(
        title="latentdiff",
        docs_url=None, redoc_url=None,  # docs.py serves both from local assets instead of a CDN
        version=__version__,
        description="Text-to-image generation with a latentdiff pipeline: latentdiff's own job API (used by the "
                    "page at /), an AUTOMATIC1111-compatible API (/sdapi/v1) and an OpenAI-compatible one (/v1).",
    )
    default_budget = max_request_cost is None
    if default_budget:
        defaults = queue.engine.defaults
        max_request_cost = default_max_cost(defaults.width, defaults.height)
    engine = queue.engine
    models = discover_models(engine.tti.source.path, engine.model_name, models_dir)
    app.state.latentdiff = ServerState(queue, max_request_cost, models, load_model, models_dir, default_budget)
    install_error_handlers(app)
    app.add_middleware(GuardMiddleware, api_key=api_key, hosts=hosts)

    static_dir = resources.files(STATIC_PACKAGE) / "static"
    index_html = (static_dir / "index.html").read_bytes()

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return Response(index_html, media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"})

    # StaticFiles serves only files inside the package's static folder (it refuses '..' and symlinks out).
    app.mount("/static", StaticFiles(directory=str(static_dir)), name="static")
    install_docs(app)
    app.include_router(api_native.router)
    app.include_router(api_a1111.router)
    app.include_router(api_openai.router)
    return app
