"""The API's error tree and its one rendering: RFC 9457 `application/problem+json`, for every error.

Handlers and dependencies raise an `ApiError` subclass; routing errors (unknown route, wrong
method), request validation and anything unexpected are translated here too, so a client never
sees another error shape. `ApiError` extends Starlette's `HTTPException` on purpose: FastAPI
re-raises those untouched when they come out of reading the body (the body size limit).
"""

from __future__ import annotations

import http
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from db.faults import database_unavailable, exception_chain
from schemas.api.common import Problem

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:comet:problem:"


class ApiError(StarletteHTTPException):
    """Base of every error the API answers with. Subclasses fix `status`, `title` and `slug`."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal Server Error"
    slug: ClassVar[str] = "internal-error"
    default_detail: ClassVar[str] = "The server could not handle this request."
    default_headers: ClassVar[Mapping[str, str]] = {}

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        errors: Sequence[tuple[str, str]] = (),
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        merged = {**self.default_headers, **(headers or {})}
        super().__init__(self.status, detail or self.default_detail, headers=merged)
        self.errors = list(errors)
        self.extra = dict(extra or {})

    @property
    def type_uri(self) -> str:
        return TYPE_PREFIX + self.slug


class BadRequest(ApiError):
    status, title, slug = 400, "Bad Request", "bad-request"
    default_detail = "The request is malformed."


class Unauthorized(ApiError):
    status, title, slug = 401, "Unauthorized", "unauthorized"
    default_detail = "Authentication is required."
    default_headers: ClassVar[Mapping[str, str]] = {"WWW-Authenticate": 'Bearer realm="comet"'}


class Forbidden(ApiError):
    status, title, slug = 403, "Forbidden", "forbidden"
    default_detail = "You may not do this."


class NotFound(ApiError):
    status, title, slug = 404, "Not Found", "not-found"
    default_detail = "There is nothing here."


class MethodNotAllowed(ApiError):
    status, title, slug = 405, "Method Not Allowed", "method-not-allowed"
    default_detail = "This method is not allowed on this resource."


class NotAcceptable(ApiError):
    status, title, slug = 406, "Not Acceptable", "not-acceptable"
    default_detail = "No representation of this resource matches the Accept header."


class Conflict(ApiError):
    status, title, slug = 409, "Conflict", "conflict"
    default_detail = "The request conflicts with the resource's current state."


class PayloadTooLarge(ApiError):
    status, title, slug = 413, "Content Too Large", "payload-too-large"
    default_detail = "The request body is too large."


class UnsupportedMediaType(ApiError):
    status, title, slug = 415, "Unsupported Media Type", "unsupported-media-type"
    default_detail = "Send the request body as application/json."


class ValidationFailed(ApiError):
    status, title, slug = 422, "Unprocessable Content", "validation-error"
    default_detail = "The request has invalid fields."


class TooManyRequests(ApiError):
    status, title, slug = 429, "Too Many Requests", "rate-limited"
    default_detail = "Too many requests; slow down."


class InternalError(ApiError):
    pass


class ServiceUnavailable(ApiError):
    status, title, slug = 503, "Service Unavailable", "unavailable"
    default_detail = "The service cannot handle requests right now."


_BY_STATUS: dict[int, type[ApiError]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        NotAcceptable,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        ValidationFailed,
        TooManyRequests,
        InternalError,
        ServiceUnavailable,
    )
}


def error_for_status(
    status: int, detail: str | None = None, headers: Mapping[str, str] | None = None
) -> ApiError:
    """The ApiError for an HTTP status (a generic one for statuses without a class)."""
    cls = _BY_STATUS.get(status)
    if cls is not None:
        return cls(detail, headers=headers)
    generic: type[ApiError] = type(
        "HttpError",
        (ApiError,),
        {
            "status": status,
            "title": _phrase(status),
            "slug": f"http-{status}",
            "default_detail": _phrase(status),
        },
    )
    return generic(detail, headers=headers)


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


# -- rendering -------------------------------------------------------------------------------------
def problem_document(error: ApiError, *, instance: str, request_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        **error.extra,
        "type": error.type_uri,
        "title": error.title,
        "status": error.status,
        "detail": str(error.detail),
        "instance": instance,
    }
    if request_id:
        body["request_id"] = request_id
    if error.errors:
        body["errors"] = [{"field": f, "message": m} for f, m in error.errors]
    return body


def problem_response(error: ApiError, *, instance: str, request_id: str | None = None) -> Response:
    body = orjson.dumps(problem_document(error, instance=instance, request_id=request_id))
    return Response(body, status_code=error.status, headers=error.headers, media_type=PROBLEM_JSON)


def _request_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get("request_id")
    return value if isinstance(value, str) else None


# -- translation of what FastAPI and Starlette raise ---------------------------------------------
def field_path(loc: Iterable[int | str]) -> str:
    """`("body", "variables", "X")` -> `body.variables.X`; list indexes as `[0]`."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "request"


def validation_problem(exc: RequestValidationError) -> ValidationFailed:
    errors: list[tuple[str, str]] = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        message = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
        if err.get("type") == "json_invalid":
            # The position of a JSON syntax error is a number, not a field.
            loc = loc[:1]
            reason = (err.get("ctx") or {}).get("error")
            message = f"is not valid JSON ({reason})" if reason else "is not valid JSON"
        elif err.get("type") == "missing":
            message = "is required"
        errors.append((field_path(loc), message))
    fields = ", ".join(dict.fromkeys(f for f, _ in errors))
    return ValidationFailed(f"Invalid request: {fields}.", errors=errors)


def allowed_methods(request: Request) -> list[str]:
    """The methods some route of the app serves at the request's path. Starlette's 405 names the
    methods of the first route whose path matched only (a path served by several routes, GET here
    and DELETE there, got `Allow: GET`)."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.router.routes):  # inside included routers too
        route_methods = route.methods
        if route_methods and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route_methods
    return sorted(methods)


def _unreadable_body(exc: StarletteHTTPException) -> bool:
    """FastAPI's own 400 for a JSON body it could not decode as text (not UTF-8) or that nests too
    deeply: the same mistake as a JSON syntax error, which FastAPI answers 422 (decision 0022)."""
    return (
        not isinstance(exc, ApiError)
        and exc.status_code == 400
        and isinstance(exc.__cause__, UnicodeDecodeError | RecursionError)
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc, ApiError):
        error = exc
    elif _unreadable_body(exc):
        reason = "not UTF-8 text" if isinstance(exc.__cause__, UnicodeDecodeError) else "nested too deeply"
        error = ValidationFailed("Invalid request: body.", errors=[("body", f"is not valid JSON ({reason})")])
    elif exc.status_code == 405:
        not_allowed = f"{request.method} is not allowed on {request.url.path}."
        error = MethodNotAllowed(not_allowed, headers={"Allow": ", ".join(allowed_methods(request))})
    else:
        # Routing errors carry the status phrase as detail; say something more useful.
        detail = exc.detail if exc.detail and exc.detail != _phrase(exc.status_code) else None
        if exc.status_code == 404 and detail is None:
            detail = f"No resource at {request.url.path}."
        error = error_for_status(exc.status_code, detail, exc.headers)
    return problem_response(error, instance=request.url.path, request_id=_request_id())


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return problem_response(validation_problem(exc), instance=request.url.path, request_id=_request_id())


RETRY_AFTER_S = 5


def for_unexpected(exc: BaseException) -> ApiError:
    """The problem for an exception nothing handled: 503 with Retry-After when the database is
    unreachable (the client should retry; nothing was half-written), else a logged 500."""
    if database_unavailable(exc):
        log.warning("database unavailable", error=repr(exc))
        return ServiceUnavailable(
            "The database is unreachable; nothing was stored. Retry shortly.",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    if any(getattr(e, "sqlstate", None) in _UNSTORABLE for e in exception_chain(exc)):
        # A NUL byte (or text the database encoding cannot hold) in a path, query or body value.
        return ValidationFailed("The request holds a character the database cannot store (a NUL byte).")
    log.error("unhandled error", exc_info=exc)
    return InternalError()


# character_not_in_repertoire, untranslatable_character
_UNSTORABLE = frozenset({"22021", "22P05"})


async def _unexpected(request: Request, exc: Exception) -> Response:
    return problem_response(for_unexpected(exc), instance=request.url.path, request_id=_request_id())


def install(app: FastAPI) -> None:
    """Register the problem+json handlers on `app`."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)


# -- OpenAPI -----------------------------------------------------------------------------------
def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries documenting each status as a problem+json Problem."""
    return {
        status: {
            "model": Problem,
            "description": _phrase(status),
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
