"""The error bodies of errors.py as pydantic models, and the `responses=` tables that declare them, so the
OpenAPI schema at /openapi.json names every status a route can send with the body it really has and
generated clients read errors right. tests/unit/test_server_openapi.py holds the server to it.

FastAPI would otherwise document 422 as its own `{"detail": [{"loc", "msg", "type"}]}`, which this
server never sends (errors.validation_error_handler answers with one sentence and `errors`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class FieldProblem(BaseModel):
    field: str = Field(description="the request field, dotted: 'width', 'body'")
    message: str
    type: str = Field(description="pydantic's error type, e.g. 'int_parsing'")


class ErrorBody(BaseModel):
    """The error body of latentdiff's and the AUTOMATIC1111-compatible API."""

    detail: str = Field(description="one sentence: what is wrong and what to do")
    field: str | None = Field(description="the request field it is about, if one")
    errors: list[FieldProblem] | None = Field(None, description="every problem found (422 only)")


class OpenAIError(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIErrorBody(BaseModel):
    """The error body of the OpenAI-compatible API (`/v1/...`), as the OpenAI SDKs parse it."""

    error: OpenAIError


_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}

# status -> (description, response headers)
STATUSES: dict[int, tuple[str, dict[str, Any]]] = {
    400: ("The body is not JSON (for /v1: any invalid request)", {}),
    401: ("An API key is required (the server was started with --api-key)", {}),
    403: ("The Host or Origin header names another site", {}),
    404: ("No such job, image or model", {}),
    408: ("The request body did not arrive in time (shorter than its Content-Length, or trickled)", {}),
    409: ("The job was interrupted before it finished, or the model it was checked against was switched", {}),
    413: ("The request is too large", {}),
    422: ("A field is invalid or this model cannot use it", {}),
    429: ("The queue is full", _RETRY_AFTER),
    500: ("The generation failed", {}),
    503: ("The server is shutting down", {}),
    504: ("The job ran past the server's time limit (--max-job-seconds) and was stopped", {}),
}

GUARDS = (401, 403, 408, 413)  # security.GuardMiddleware can answer these on any route


def error_responses(*statuses: int, openai: bool = False) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route or router: each status with the error body its API sends."""
    model = OpenAIErrorBody if openai else ErrorBody
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description, headers = STATUSES[status]
        responses[status] = {"model": model, "description": description, **({"headers": headers} if headers else {})}
    if openai:
        # it answers invalid requests with 400, never 422; declaring the 4XX range keeps FastAPI from adding
        # its default 422
        responses["4XX"] = {"model": model, "description": "Any other client error, in the same shape"}
    return responses
