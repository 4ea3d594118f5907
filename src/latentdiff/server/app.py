"""The FastAPI application: the page, three APIs over one job queue, the guards, the error shapes.

`create_app(queue)` wires what the `serve` stage (or a test) built: a started `JobQueue` whose worker
thread owns the `PipelineEngine`. The app reads the engine's facts (model name, hash, defaults) and
asks it to check settings, but never runs the model itself.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Callable

from fastapi import FastAPI
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from latentdiff import __version__
from latentdiff.server import api_a1111, api_native, api_openai
from latentdiff.server.budget import default_max_cost
from latentdiff.server.docs import install_docs
from latentdiff.server.errors import install_error_handlers
from latentdiff.server.hosts import HostPolicy
from latentdiff.server.jobs import JobQueue
from latentdiff.server.models import discover_models
from latentdiff.server.security import GuardMiddleware, NoSniffMiddleware
from latentdiff.server.state import ServerState

STATIC_PACKAGE = "latentdiff.server"
# The page only loads its own script, style and images (previews are data: URLs, results blob: URLs).
PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


class _App(FastAPI):
    def build_middleware_stack(self):
        # outside FastAPI's own ServerErrorMiddleware, so even an unhandled error's 500 carries nosniff
        return NoSniffMiddleware(super().build_middleware_stack())


class _StaticWithPagePolicy(StaticFiles):
    """The static files with the page's Content-Security-Policy: /static/index.html is the page too, and
    without the policy (frame-ancestors 'none') another site could frame a working copy of it."""

    async def get_response(self, path: str, scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        return response


def create_app(queue: JobQueue, *, api_key: str = "", hosts: HostPolicy | None = None,
               max_request_cost: float | None = None, models_dir: str | None = None,
               load_model: Callable[[Path, str], object] | None = None) -> FastAPI:
    """`hosts`: the Host names to answer (default: loopback only); `max_request_cost`: megapixel-steps
    one request may ask for (default: budget.default_max_cost at the model's native size);
    `models_dir`: more pipeline folders clients may switch to, loaded by `load_model(path, name)`."""
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
    models = discover_models(engine.text_to_image.source.path, engine.model_name, models_dir)
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
    app.mount("/static", _StaticWithPagePolicy(directory=str(static_dir)), name="static")
    install_docs(app)
    app.include_router(api_native.router)
    app.include_router(api_a1111.router)
    app.include_router(api_openai.router)
    return app
