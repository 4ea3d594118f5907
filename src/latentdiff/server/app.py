"""The FastAPI application: the page, three APIs over one job queue, the guards, the error shapes.

`create_app(queue)` wires what the `serve` stage (or a test) built: a started `JobQueue` whose worker
thread owns the `PipelineEngine`. The app reads the engine's facts (model name, hash, defaults) and
asks it to check settings, but never runs the model itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from latentdiff import __version__
from latentdiff.server.budget import check_cost, default_max_cost
from latentdiff.server.errors import ApiError, install_error_handlers
from latentdiff.server.hosts import HostPolicy
from latentdiff.server.jobs import Job, JobParams, JobQueue, QueueFull
from latentdiff.server.security import GuardMiddleware, NoSniffMiddleware

STATIC_PACKAGE = "latentdiff.server"
# The page only loads its own script, style and images (previews are data: URLs, results blob: URLs).
PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


@dataclass
class ServerState:
    queue: JobQueue  # its `engine` (a PipelineEngine) is the model: name, hash, defaults, checks
    max_request_cost: float = math.inf  # megapixel-steps (budget.py)

    @property
    def engine(self):
        return self.queue.engine

    def submit(self, params: JobParams, field_names: dict[str, str] | None = None) -> Job:
        """Check the settings against the model (422 naming the field) and the compute budget (413),
        then queue a job, or answer 429 with Retry-After when the queue is full. `field_names` maps
        latentdiff's names (`guidance`) to the calling API's (`cfg_scale`) for the error message."""
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
               max_request_cost: float | None = None) -> FastAPI:
    """`hosts`: the Host names to answer (default: loopback only); `max_request_cost`: megapixel-steps
    one request may ask for (default: budget.default_max_cost at the model's native size)."""
    from latentdiff.server import api_a1111, api_native, api_openai
    from latentdiff.server.docs import install_docs

    app = _App(
        title="latentdiff",
        docs_url=None, redoc_url=None,  # docs.py serves both from local assets instead of a CDN
        version=__version__,
        description="Text-to-image generation with a latentdiff pipeline: latentdiff's own job API (used by the "
                    "page at /), an AUTOMATIC1111-compatible API (/sdapi/v1) and an OpenAI-compatible one (/v1).",
    )
    if max_request_cost is None:
        defaults = queue.engine.defaults
        max_request_cost = default_max_cost(defaults.width, defaults.height)
    app.state.latentdiff = ServerState(queue, max_request_cost)
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
