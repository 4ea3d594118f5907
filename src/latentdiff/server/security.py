"""Request guards that run before any endpoint: host, origin, API key, body size and read time.

- **Host** (DNS rebinding): the `Host` header must name a host this server answers to, compared
  exactly (hosts.py); a page on evil.example whose name was re-pointed at 127.0.0.1 sends `Host: evil...`.
- **Origin** (cross-site requests): a browser sends `Origin` with cross-site requests; when it is
  present and is not the server's own `scheme://host:port` (scheme included), the request is refused, as ComfyUI's
  `origin_only_middleware` does. Clients that are not browsers send no Origin and are unaffected.
- **API key**: with `--api-key`, every API path needs `Authorization: Bearer KEY` or `x-api-key: KEY`
  (the page at `/` asks for it and sends it); compared in constant time.
- **Body size**: a body past `limits.MAX_BODY_BYTES` is refused with 413 before it is parsed, whether
  it declares its length or comes chunked.
- **Body read time**: a body that has not fully arrived `limits.BODY_READ_TIMEOUT_S` after the request
  began (shorter than its Content-Length, or trickled) is answered 408 and the connection closed;
  neither uvicorn nor h11 bounds this, so one client could otherwise hold a connection forever.

Pure ASGI middlewares, so the streamed progress responses pass through untouched.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException

from latentdiff import limits
from latentdiff.server.errors import error_payload
from latentdiff.server.hosts import HostPolicy

# Paths that are API calls (need the key when one is set). The page, its static files and /docs are not.
API_PREFIXES = ("/api/", "/sdapi/", "/v1/")


class BodyTooLarge(HTTPException):
    """Raised from `receive` while an endpoint reads the body. An HTTPException, so FastAPI's body parsing
    passes it on (any other exception there becomes "400 error parsing the body") to the 413 handler."""

    def __init__(self, max_body_bytes: int):
        super().__init__(413, f"The request body is over the limit of {max_body_bytes} bytes.")


class BodyTimeout(HTTPException):
    def __init__(self, timeout_s: float):
        super().__init__(408, f"The request body did not arrive within {timeout_s:g} s (is it shorter than its "
                              f"Content-Length?); send the whole body at once.", headers={"Connection": "close"})


class GuardMiddleware:
    def __init__(self, app, *, api_key: str = "", hosts: HostPolicy | None = None,
                 max_body_bytes: int = limits.MAX_BODY_BYTES, body_timeout_s: float | None = None):
        self.app = app
        self.api_key = api_key
        self.hosts = hosts or HostPolicy("127.0.0.1")
        self.max_body_bytes = max_body_bytes
        # read at construction, not import, so a test can shorten it
        self.body_timeout_s = limits.BODY_READ_TIMEOUT_S if body_timeout_s is None else body_timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")

        if not self.hosts.allows(host):
            await self._refuse(send, path, 403, f"Host '{host[:256]}' is neither a loopback address nor a name this "
                                                "server was told to answer to; address it as 127.0.0.1 or "
                                                "localhost, or start it with --allowed-hosts NAME.")
            return
        origin = headers.get("origin")
        if origin is not None:
            parts = urlsplit(origin)
            scheme = scope.get("scheme", "http")
            if origin == "null" or parts.netloc.lower() != host.lower() or parts.scheme.lower() != scheme:
                await self._refuse(send, path, 403, f"Origin '{origin}' is another site; cross-site requests "
                                                    "are refused.")
                return
        if self.api_key and path.startswith(API_PREFIXES) and not self._key_ok(headers):
            await self._refuse(send, path, 401, "This server needs an API key: send 'Authorization: Bearer "
                                                "KEY' or 'x-api-key: KEY'.", extra_headers=[(b"www-authenticate", b"Bearer")])
            return
        # the routes that take a picture get a larger limit than the text-only ones
        max_body_bytes = max(self.max_body_bytes, limits.MAX_IMAGE_BODY_BYTES) \
            if path in limits.IMAGE_BODY_PATHS else self.max_body_bytes
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body_bytes:
            await self._refuse(send, path, 413, f"The request body is {length} bytes; the limit is "
                                                f"{max_body_bytes} bytes.")
            return

        received = 0
        # only a request that announces a body waits for one; after it, `receive` only waits for a
        # disconnect (streamed responses), which has no time limit
        body_pending = length not in (None, "0") or "transfer-encoding" in headers
        body_deadline = None  # the first read starts the clock
        response_started = False

        async def counting_receive():
            nonlocal received, body_pending, body_deadline
            if not body_pending:
                message = await receive()
            else:
                body_deadline = body_deadline or time.monotonic() + self.body_timeout_s
                try:
                    message = await asyncio.wait_for(receive(), max(body_deadline - time.monotonic(), 0))
                except asyncio.TimeoutError:
                    raise BodyTimeout(self.body_timeout_s) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_body_bytes:
                    raise BodyTooLarge(max_body_bytes)
                body_pending = body_pending and message.get("more_body", False)
            return message

        async def tracking_send(message):
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except (BodyTooLarge, BodyTimeout) as err:  # read outside an endpoint's error handlers
            if response_started:
                raise
            await self._refuse(send, path, err.status_code, err.detail, extra_headers=[
                (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (err.headers or {}).items()])

    def _key_ok(self, headers: dict[str, str]) -> bool:
        given = headers.get("x-api-key", "")
        auth = headers.get("authorization", "")
        if not given and auth.lower().startswith("bearer "):
            given = auth[len("bearer "):].strip()
        return bool(given) and hmac.compare_digest(given.encode(), self.api_key.encode())

    @staticmethod
    async def _refuse(send, path: str, status: int, message: str, extra_headers=()) -> None:
        body = json.dumps(error_payload(path, message)).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()), *extra_headers]})
        await send({"type": "http.response.body", "body": body})


class NoSniffMiddleware:
    """`X-Content-Type-Options: nosniff` on every response (pages, static files, errors, refusals), so a
    browser never runs a PNG or JSON body as script or style. Wraps the whole app (see app.py)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-content-type-options"]
                message = {**message, "headers": [*headers, (b"x-content-type-options", b"nosniff")]}
            await send(message)

        await self.app(scope, receive, send_with_header)
