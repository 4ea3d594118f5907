"""Request guards that run before any endpoint: host, origin, API key, body size.

- **Host** (DNS rebinding): when the server listens on a loopback address, the `Host` header must name
  a loopback host; a page on evil.example whose name was re-pointed at 127.0.0.1 sends `Host: evil...`.
- **Origin** (cross-site requests): a browser sends `Origin` with cross-site requests; when it is
  present and is not the server's own `scheme://host:port` (scheme included), the request is refused, as ComfyUI's
  `origin_only_middleware` does. Clients that are not browsers send no Origin and are unaffected.
- **API key**: with `--api-key`, every API path needs `Authorization: Bearer KEY` or `x-api-key: KEY`
  (the page at `/` asks for it and sends it); compared in constant time.
- **Body size**: a body past `limits.MAX_BODY_BYTES` is refused with 413 before it is parsed.

A pure ASGI middleware, so the streamed progress responses pass through untouched.
"""

from __future__ import annotations

import hmac
import json
from urllib.parse import urlsplit

from latentdiff.server import limits
from latentdiff.server.errors import error_payload

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# Paths that are API calls (need the key when one is set). The page, its static files and /docs are not.
API_PREFIXES = ("/api/", "/sdapi/", "/v1/")


class BodyTooLarge(Exception):
    pass


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def _hostname(host_header: str) -> str:
    """'127.0.0.1:7860' -> '127.0.0.1'; '[::1]:7860' -> '::1'."""
    return (urlsplit(f"//{host_header}").hostname or "").lower()


class GuardMiddleware:
    def __init__(self, app, *, api_key: str = "", check_loopback_host: bool = True,
                 max_body_bytes: int = limits.MAX_BODY_BYTES):
        self.app = app
        self.api_key = api_key
        self.check_loopback_host = check_loopback_host
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")

        if self.check_loopback_host and not is_loopback(_hostname(host)):
            await self._refuse(send, path, 403, f"Host '{host}' is not a loopback name; this server only "
                                                "answers requests addressed to 127.0.0.1 or localhost.")
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
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await self._refuse(send, path, 413, f"The request body is {length} bytes; the limit is "
                                                f"{self.max_body_bytes} bytes.")
            return

        received = 0
        response_started = False

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge()
            return message

        async def tracking_send(message):
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if response_started:
                raise
            await self._refuse(send, path, 413, f"The request body is over the limit of {self.max_body_bytes} bytes.")

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
