"""The API's pure ASGI middleware: request ids and the access log, security headers (HSTS when
served over TLS), a last-resort error guard, and the request body size limit; CORS (Starlette's,
added with `cors_options` only when origins are configured: closed by default).

Pure ASGI (no BaseHTTPMiddleware): no extra task per request and streaming responses pass
straight through. Order, outermost first: `RequestContext` (id, client address, timing, access log,
metrics) -> CORS -> `SecurityHeaders` -> `ErrorGuard` -> `BodySizeLimit` -> FastAPI.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import structlog
from starlette.datastructures import MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import PROBLEM_JSON, ApiError, BadRequest, PayloadTooLarge, for_unexpected, problem_document

log = structlog.get_logger("comet.api.access")

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


def docs_csp(script_sources: str = "", style_sources: str = "") -> str:
    """The policy of the API docs pages (/docs, /redoc): everything from Comet itself, nothing from
    another host (decision 0031). A page that runs an inline script or lets its library inject
    styles names them with a hash or nonce in `script_sources` / `style_sources`; `data:` images
    are Swagger UI's icons, embedded in its stylesheet, and ReDoc's search runs in a `blob:`
    worker."""
    return (
        "default-src 'self'; "
        f"script-src 'self'{' ' + script_sources if script_sources else ''}; "
        f"style-src 'self'{' ' + style_sources if style_sources else ''}; "
        "img-src 'self' data:; font-src 'self'; connect-src 'self'; worker-src 'self' blob:; "
        "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )


# The docs pages set their own policy (with their script hash or style nonce); this is the fallback
# for any other answer on their paths.
DOCS_CSP = docs_csp()
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
# The dashboard (api/dashboard.py): its own scripts and styles only, no inline code, and calls to
# the API on the same origin; style attributes stay forbidden (colours are classes or CSSOM).
UI_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def csp_for(path: str) -> str:
    """The Content-Security-Policy of an answer on `path`."""
    if path in DOCS_PATHS:
        return DOCS_CSP
    if path == "/ui" or path.startswith("/ui/"):
        return UI_CSP
    return API_CSP


RouteObserver = Callable[[str, str, int, float], None]


def sane_request_id(value: str | None) -> str:
    """The client's X-Request-ID when it is short and plain, else a fresh one."""
    if value and _SANE_REQUEST_ID.match(value):
        return value
    return uuid.uuid4().hex


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def route_template(scope: Scope) -> str:
    """The matched route's path template (bounded label cardinality), or `unmatched`."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else "unmatched"


async def send_problem(send: Send, error: ApiError, *, instance: str, request_id: str | None) -> None:
    body = orjson.dumps(problem_document(error, instance=instance, request_id=request_id))
    headers = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestContext:
    """Request id (accepted from `X-Request-ID` if sane, echoed back, bound to every log line),
    `Server-Timing`, one access log line per request, and the request metrics."""

    def __init__(self, app: ASGIApp, observe: RouteObserver | None = None) -> None:
        self.app = app
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = sane_request_id(_header(scope, b"x-request-id"))
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
                headers["Server-Timing"] = f"app;dur={(time.perf_counter() - start) * 1000:.1f}"
            await send(message)

        client = scope.get("client")
        client_ip = str(client[0]) if client else None
        with structlog.contextvars.bound_contextvars(request_id=request_id, client_ip=client_ip):
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                duration = time.perf_counter() - start
                log.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    duration_ms=round(duration * 1000, 2),
                )
                if self.observe is not None:
                    self.observe(scope["method"], route_template(scope), status, duration)


class SecurityHeaders:
    """nosniff, no framing, no referrer, and a Content-Security-Policy on every response; with
    `hsts_max_age_s` (served over TLS), Strict-Transport-Security too."""

    def __init__(self, app: ASGIApp, hsts_max_age_s: int | None = None) -> None:
        self.app = app
        self.hsts = None if hsts_max_age_s is None else f"max-age={hsts_max_age_s}; includeSubDomains"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = csp_for(scope["path"])
        api = scope["path"].startswith("/api/")

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "no-referrer")
                headers.setdefault("Content-Security-Policy", csp)
                if self.hsts is not None:
                    headers.setdefault("Strict-Transport-Security", self.hsts)
                if api:
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_wrapper)


class ErrorGuard:
    """The last resort: an exception nothing handled becomes a logged 500 problem (no traceback
    to the client) as long as the response has not started; after that the connection is dropped."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except ClientDisconnect:
            # The client went away before its body was read: nothing was stored, and nobody is
            # left to answer. Not a server error.
            log.info("client disconnected before its request was read", path=scope["path"])
        except Exception as exc:
            if started:
                raise
            await send_problem(
                send, for_unexpected(exc), instance=scope["path"], request_id=current_request_id()
            )


class BodySizeLimit:
    """Refuse bodies over `max_bytes` with 413: at once by Content-Length, else while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        rid = current_request_id()
        if length is not None:
            if not length.isdigit():
                await send_problem(
                    send,
                    BadRequest("Content-Length is not a number."),
                    instance=scope["path"],
                    request_id=rid,
                )
                return
            if int(length) > self.max_bytes:
                await send_problem(send, self._too_large(), instance=scope["path"], request_id=rid)
                return
        received = 0

        async def receive_wrapper() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised inside the app's body read; FastAPI re-raises HTTPExceptions from there,
                    # and the problem handler answers 413.
                    raise self._too_large()
            return message

        await self.app(scope, receive_wrapper, send)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"The request body is larger than the {self.max_bytes} byte limit.")


def current_request_id() -> str | None:
    value: Any = structlog.contextvars.get_contextvars().get("request_id")
    return value if isinstance(value, str) else None


CORS_HEADERS = ("Authorization", "Content-Type", "X-Request-ID", "Last-Event-ID", "Accept", "Idempotency-Key")
CORS_EXPOSED = (
    "X-Request-ID",
    "Retry-After",
    "Location",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "Idempotent-Replayed",
)


def cors_options(origins: tuple[str, ...]) -> dict[str, Any]:
    """Keyword arguments for Starlette's CORSMiddleware: bearer tokens, not cookies, so no
    credentials; only the configured origins."""
    return {
        "allow_origins": list(origins),
        "allow_credentials": False,
        "allow_methods": ["GET", "POST", "PUT", "PATCH", "DELETE"],
        "allow_headers": list(CORS_HEADERS),
        "expose_headers": list(CORS_EXPOSED),
        "max_age": 600,
    }
