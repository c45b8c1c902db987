"""The problems each operation can answer, in the OpenAPI document, derived from the route itself.

A route's dependencies decide most of its error answers, the same way for every route: who needs
a credential can be told 401, a route that touches the database 503 while it is unreachable, a
rate-limited action 429, and so on. Listing those by hand on each route drifts (the conformance
test found routes answering statuses their document did not list), so this pass walks each route's
dependency tree once and adds every status it can answer that the route did not document itself,
as a problem+json document, with the headers that come with it (`WWW-Authenticate`, `Retry-After`).
Statuses a route answers for reasons of its own (409 on a conflict of its state, 400 on a
malformed signature) stay declared on the route with `problem_responses`. Decision 0022.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from api import deps, errors, idempotency, ratelimit
from api.permissions import RATE_LIMITED, Action, ActionDependency

_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "How to authenticate: `Bearer`.",
            "required": True,
            "schema": {"type": "string"},
        }
    },
    429: _RETRY_AFTER,
    503: _RETRY_AFTER,
}
_WHY: dict[int, str] = {
    401: "No credential, or one that is invalid, expired or revoked.",
    403: "The caller's role or the token's scopes do not allow this.",
    404: "Nothing here, or nothing the caller may see.",
    409: "A concurrent request with the same `Idempotency-Key` finished first; retry.",
    413: "The request body is too large.",
    415: "The body is not JSON.",
    429: "Too many requests; retry after `Retry-After` seconds.",
    503: "The database is unreachable; nothing was stored. Retry after `Retry-After` seconds.",
}


def _calls(dependant: Any) -> Iterator[Any]:
    for dependency in getattr(dependant, "dependencies", ()):
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)


def statuses_of(route: APIRoute, dependant: Any = None, methods: set[str] | None = None) -> set[int]:
    """The error statuses `route` can answer whatever its handler does, from its dependencies
    (`dependant` and `methods`: the route as included in the app, when they differ)."""
    dependant = dependant if dependant is not None else route.dependant
    methods = methods if methods is not None else route.methods or set()
    calls = list(_calls(dependant))
    actions = [c.action for c in calls if isinstance(c, ActionDependency) and c.action is not None]
    statuses: set[int] = set()
    if deps.get_principal in calls:
        statuses.add(401)
        if methods - {"GET", "HEAD"}:
            statuses.add(403)  # a `read` token may not change anything
    if deps.get_admin in calls or any(a is not Action.READ for a in actions):
        statuses.add(403)
    if dependant.path_params:
        statuses.add(404)  # the thing the path names may not exist, or not be visible to the caller
    if any(isinstance(c, ratelimit.RateLimited | ratelimit.RateLimitedPerUser) for c in calls) or any(
        a in RATE_LIMITED for a in actions
    ):
        statuses.add(429)
    if deps.get_session in calls:
        statuses.add(503)
    if route.body_field is not None:
        statuses.add(413)
        if deps.require_json in calls:
            statuses.add(415)
    if idempotency.idempotent_request in calls:
        statuses.add(409)
    return statuses


def _problem(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _WHY[status],
        "content": {errors.PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if status in _HEADERS:
        response["headers"] = _HEADERS[status]
    return response


def install(app: FastAPI) -> None:
    """Add each route's dependency-given problems to its operations in `app.openapi()`."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        paths = schema.get("paths", {})
        for context in iter_route_contexts(app.routes):
            route = context.original_route
            if not isinstance(route, APIRoute) or not route.include_in_schema:
                continue
            operations = paths.get(context.path_format, {})
            methods = set(context.methods or ())
            statuses = sorted(statuses_of(route, getattr(context, "dependant", None), methods))
            for method in methods:
                operation = operations.get(method.lower())
                if operation is None:
                    continue
                responses = operation.setdefault("responses", {})
                for status in statuses:
                    response = responses.setdefault(str(status), _problem(status))
                    if status in _HEADERS:
                        response.setdefault("headers", {}).update(_HEADERS[status])
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
