"""What the conformance run found first, pinned down without services (decision 0022): a 405's
`Allow` names every method of the path, `PATCH /users/me` is a 405 rather than the `/users/{id}`
route's 422, a body that cannot be read as JSON text is a 422 like any malformed JSON, and the
document lists the statuses each operation's dependencies can answer, with their headers.

The app runs in-process without its lifespan: routing, body parsing and the document need neither
Postgres nor Kafka.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from config.settings import ApiSettings

OPERATIONS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="module")
def app() -> FastAPI:
    settings = ApiSettings(
        jwt_secret="j" * 64,
        secret_key="k" * 64,
        max_body_bytes=4096,
        database_url="postgresql+asyncpg://nobody:nothing@127.0.0.1:1/none",
        kafka_bootstrap_servers="127.0.0.1:1",
    )
    return create_app(settings)


@pytest.fixture(scope="module")
def document(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://comet.test") as client:
        yield client


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in OPERATIONS
    ]


async def test_a_405_allows_every_method_some_route_serves_at_that_path(client: httpx.AsyncClient) -> None:
    # GET, PATCH and DELETE of a project are three routes; Starlette's 405 named the first one's only.
    response = await client.options(f"/api/v1/projects/{uuid.uuid4()}")
    assert response.status_code == 405, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["allow"] == "DELETE, GET, PATCH"


async def test_every_405_names_exactly_the_documented_methods_of_its_path(
    client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    for path, item in document["paths"].items():
        documented = sorted(m.upper() for m in item if m in OPERATIONS)
        concrete = path.replace("{", "").replace("}", "")  # any value fits a path parameter here
        for name in ("project_id", "run_id", "user_id", "suite_id", "letter_id", "token_id", "session_id"):
            concrete = concrete.replace(name, str(uuid.uuid4()))
        response = await client.request("TRACE", concrete)
        assert response.status_code == 405, (path, response.text)
        assert response.headers["allow"] == ", ".join(documented), path


async def test_patch_on_users_me_is_a_405_allowing_get_not_the_user_id_route(
    client: httpx.AsyncClient,
) -> None:
    response = await client.patch("/api/v1/users/me", json={"display_name": "x"})
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == "GET"


async def test_the_user_id_route_still_takes_an_id(client: httpx.AsyncClient) -> None:
    response = await client.patch(f"/api/v1/users/{uuid.uuid4()}", json={"display_name": "x"})
    assert response.status_code == 401  # it reached the route: authentication comes first


async def test_a_body_that_is_not_utf8_is_a_422_on_the_body_like_malformed_json(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/api/v1/auth/login", content=b'{"email": "\xff\xfe"}', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"] == [{"field": "body", "message": "is not valid JSON (not UTF-8 text)"}]


async def test_json_nested_too_deeply_to_decode_is_a_422_on_the_body(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/login", content=b"[" * 4000, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [
        {"field": "body", "message": "is not valid JSON (nested too deeply)"}
    ]


def test_every_rate_limited_operation_documents_429_with_retry_after(document: dict[str, Any]) -> None:
    limited = [
        ("/api/v1/auth/login", "post"),
        ("/api/v1/projects/{project_id}/runs", "post"),
        ("/api/v1/runs/{run_id}/cancel", "post"),
        ("/api/v1/runs/{run_id}/retry", "post"),
        ("/api/v1/projects/{project_id}/test-suites/{suite_id}/runs", "post"),
        ("/api/v1/webhooks/{provider}", "post"),
    ]
    for path, method in limited:
        answer = document["paths"][path][method]["responses"]["429"]
        assert answer["headers"]["Retry-After"]["required"] is True, path
        assert "application/problem+json" in answer["content"], path
    assert "429" not in document["paths"]["/api/v1/projects/{project_id}/runs"]["get"]["responses"]


def test_every_operation_on_the_database_documents_503_and_the_probes_do_not(
    document: dict[str, Any],
) -> None:
    for path, method, operation in _operations(document):
        if path in (
            "/healthz",
            "/readyz",
            "/metrics",
            "/api/v1/auth/oauth/{provider}/authorize",
            "/api/v1/auth/providers",  # read from the settings, never the database
        ):
            continue
        assert "503" in operation["responses"], (method, path)
        assert "Retry-After" in operation["responses"]["503"].get("headers", {}), (method, path)
    assert "503" not in document["paths"]["/healthz"]["get"]["responses"]


def test_every_authenticated_operation_documents_401_and_every_path_parameter_404(
    document: dict[str, Any],
) -> None:
    for path, method, operation in _operations(document):
        responses = operation["responses"]
        if operation.get("security"):
            assert "401" in responses, (method, path)
            assert "WWW-Authenticate" in responses["401"]["headers"], (method, path)
        if any(p["in"] == "path" for p in operation.get("parameters", [])):
            assert "404" in responses, (method, path)
        for status, answer in responses.items():
            if status.startswith(("4", "5")):
                assert list(answer["content"]) == ["application/problem+json"], (method, path, status)


def test_every_cursor_parameter_documents_its_shape(document: dict[str, Any]) -> None:
    cursors = [
        parameter
        for _, _, operation in _operations(document)
        for parameter in operation.get("parameters", [])
        if parameter["name"] == "cursor"
    ]
    assert len(cursors) >= 10
    for parameter in cursors:
        shape = next(s for s in parameter["schema"]["anyOf"] if s.get("type") == "string")
        assert shape == {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[A-Za-z0-9_-]+$"}
