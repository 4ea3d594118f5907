"""`/docs` (Swagger UI) and `/redoc` with their scripts served by this server, so they work offline.

FastAPI's own pages load Swagger UI and ReDoc from a CDN: on a machine without internet access (or
behind a proxy that blocks jsdelivr) `/docs` is a blank page. The `fastapi-offline` package ships the
same assets (Swagger UI 5, which reads the OpenAPI 3.1 document FastAPI writes, and ReDoc 2); we mount
its `static` folder and build the two pages with FastAPI's own HTML helpers pointing at it. (ReDoc's
"API docs by Redocly" badge still asks its CDN for a small logo; offline only that picture is missing.)
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"  # not under /static: that folder is the page's own, from this package
ASSETS_PACKAGE = "fastapi_offline"


def install_docs(app: FastAPI) -> None:
    """Serve `/docs` and `/redoc` from local assets. Create `app` with `docs_url=None, redoc_url=None`."""
    assets = resources.files(ASSETS_PACKAGE) / "static"
    app.mount(ASSETS_URL, StaticFiles(directory=str(assets)), name="docs-assets")
    favicon = f"{ASSETS_URL}/favicon.png"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title} - Swagger UI",
                                   swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS_URL}/swagger-ui.css", swagger_favicon_url=favicon)

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=app.openapi_url, title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js", redoc_favicon_url=favicon,
                              with_google_fonts=False)
