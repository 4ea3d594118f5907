"""Error bodies: one sentence naming the field, in the shape each API's clients already parse.

- OpenAI routes (`/v1/...`): `{"error": {"message", "type", "param", "code"}}` as the OpenAI SDK expects.
- Everything else (A1111, the page's API): FastAPI's `{"detail": ...}`, with `field` and, for
  validation errors, the list of every problem in `errors`.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

OPENAI_PREFIX = "/v1/"


class ApiError(Exception):
    """An error an endpoint raises on purpose: status, one sentence, the field it is about."""

    def __init__(self, status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.field, self.headers = status, message, field, headers


def error_payload(path: str, message: str, field: str | None = None, errors: list | None = None) -> dict[str, Any]:
    if path.startswith(OPENAI_PREFIX):
        return {"error": {"message": message, "type": "invalid_request_error", "param": field, "code": None}}
    payload: dict[str, Any] = {"detail": message, "field": field}
    if errors is not None:
        payload["errors"] = errors
    return payload


def _field_name(loc: tuple | list) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


async def validation_error_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        # Malformed JSON: there is no field to blame; say where the parser stopped.
        return JSONResponse(error_payload(request.url.path, f"The request body is not valid JSON "
                                          f"({first.get('ctx', {}).get('error', 'parse error')}).", "body"),
                            status_code=400)
    field = _field_name(first.get("loc", ()))
    message = "; ".join(f"{_field_name(e.get('loc', ()))}: {e.get('msg')}" for e in errors[:5])
    clean = [{"field": _field_name(e.get("loc", ())), "message": e.get("msg"), "type": e.get("type")} for e in errors]
    status = 400 if request.url.path.startswith(OPENAI_PREFIX) else 422
    return JSONResponse(error_payload(request.url.path, message, field, clean), status_code=status)


async def api_error_handler(request: Request, exc: ApiError) -> JSONResponse:
    status = exc.status
    if status == 422 and request.url.path.startswith(OPENAI_PREFIX):
        status = 400  # OpenAI answers every invalid request with 400
    return JSONResponse(error_payload(request.url.path, exc.message, exc.field), status_code=status,
                        headers=exc.headers)


async def http_error_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return JSONResponse(error_payload(request.url.path, message), status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


def install_error_handlers(app) -> None:
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
