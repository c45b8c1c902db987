"""Every error is RFC 9457 problem+json, and the middleware's headers are on every response.

These run the real app in-process without its lifespan: nothing here touches Postgres or Kafka.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import structlog.testing
from fastapi import FastAPI, Request
from starlette.types import Message, Scope

from api.app import create_app
from api.errors import Conflict, TooManyRequests, field_path
from config.settings import ApiSettings

PROBLEM_KEYS = {"type", "title", "status", "detail", "instance"}


@pytest.fixture(scope="module")
def app() -> FastAPI:
    settings = ApiSettings(
        jwt_secret="j" * 64,
        secret_key="k" * 64,
        max_body_bytes=1024,
        database_url="postgresql+asyncpg://nobody:nothing@127.0.0.1:1/none",
        kafka_bootstrap_servers="127.0.0.1:1",
    )
    app = create_app(settings)

    async def boom() -> None:
        raise RuntimeError("secret internals that must not leak")

    async def conflict() -> None:
        raise Conflict("It clashes.")

    async def slow_down() -> None:
        raise TooManyRequests(headers={"Retry-After": "3"})

    async def read_body(request: Request) -> None:
        await request.body()

    app.add_api_route("/test/read-body", read_body, methods=["POST"])
    app.add_api_route("/test/boom", boom)
    app.add_api_route("/test/conflict", conflict)
    app.add_api_route("/test/slow-down", slow_down)
    return app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://comet.test") as client:
        yield client


def _problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert isinstance(body, dict)
    assert body.keys() >= PROBLEM_KEYS
    assert body["status"] == status
    assert str(body["type"]).startswith("urn:comet:problem:")
    assert body["instance"] == response.request.url.path
    return body


async def test_an_unknown_route_is_a_404_problem(client: httpx.AsyncClient) -> None:
    _problem(await client.get("/api/v1/nothing-here"), 404)


async def test_a_wrong_method_is_a_405_problem_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.delete("/healthz")
    _problem(response, 405)
    assert "GET" in response.headers["allow"]


async def test_no_token_is_a_401_problem_with_www_authenticate(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/users/me")
    _problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_bad_token_is_a_401_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/users/me", headers={"Authorization": "Bearer not.a.token"})
    assert _problem(response, 401)["detail"] == "The access token is invalid or has expired."


async def test_validation_errors_name_each_field_as_a_dotted_path(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/auth/login", json={"email": "a@example.com", "extra": 1})
    body = _problem(response, 422)
    fields = {e["field"]: e["message"] for e in body["errors"]}  # type: ignore[attr-defined]
    assert fields["body.password"] == "is required"
    assert "body.extra" in fields


async def test_malformed_json_is_a_422_problem_on_the_body(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/login", content=b'{"email": ', headers={"Content-Type": "application/json"}
    )
    body = _problem(response, 422)
    assert body["errors"][0]["field"] == "body"  # type: ignore[index]


async def test_a_body_that_is_not_json_is_a_415_problem(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/login", content=b"email=a&password=b", headers={"Content-Type": "text/plain"}
    )
    _problem(response, 415)


async def test_a_body_over_the_limit_by_content_length_is_a_413_problem(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/login", content=b"x" * 2048, headers={"Content-Type": "application/json"}
    )
    _problem(response, 413)


async def test_a_streamed_body_over_the_limit_is_a_413_problem(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 512

    response = await client.post(
        "/api/v1/auth/login", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    _problem(response, 413)


async def test_a_bad_content_length_is_a_400_problem(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/login",
        content=b"{}",
        headers={"Content-Type": "application/json", "Content-Length": "x"},
    )
    _problem(response, 400)


async def test_an_unexpected_error_is_a_500_problem_without_internals(client: httpx.AsyncClient) -> None:
    response = await client.get("/test/boom", headers={"X-Request-ID": "trace-me-1"})
    body = _problem(response, 500)
    assert "secret internals" not in response.text
    assert "Traceback" not in response.text
    assert body["request_id"] == "trace-me-1"
    assert response.headers["x-request-id"] == "trace-me-1"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_a_client_gone_before_its_body_was_read_gets_no_answer_and_is_no_server_error(
    app: FastAPI,
) -> None:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/test/read-body",
        "raw_path": b"/test/read-body",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"comet.test"), (b"content-length", b"10")],
        "client": ("127.0.0.1", 5000),
        "server": ("comet.test", 80),
        "state": {},
    }
    with structlog.testing.capture_logs() as logs:
        await app(scope, receive, send)
    assert sent == []
    assert [entry["event"] for entry in logs if entry["log_level"] == "error"] == []
    assert any(entry["event"] == "client disconnected before its request was read" for entry in logs)


async def test_api_errors_keep_their_status_detail_and_headers(client: httpx.AsyncClient) -> None:
    assert _problem(await client.get("/test/conflict"), 409)["detail"] == "It clashes."
    response = await client.get("/test/slow-down")
    _problem(response, 429)
    assert response.headers["retry-after"] == "3"


async def test_a_sane_request_id_is_echoed_and_an_insane_one_replaced(client: httpx.AsyncClient) -> None:
    echoed = await client.get("/healthz", headers={"X-Request-ID": "abc.DEF-123_x"})
    assert echoed.headers["x-request-id"] == "abc.DEF-123_x"
    for bad in ("has space", "x" * 129, "semi;colon"):
        replaced = await client.get("/healthz", headers={"X-Request-ID": bad})
        assert replaced.headers["x-request-id"] != bad
        assert len(replaced.headers["x-request-id"]) == 32


async def test_every_response_has_security_and_timing_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert response.headers["server-timing"].startswith("app;dur=")


async def test_the_docs_page_gets_its_own_same_origin_policy(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert "swagger-ui" in response.text
    csp = response.headers["content-security-policy"]
    assert "script-src 'self' 'sha256-" in csp
    assert "frame-ancestors 'none'" in csp


async def test_openapi_documents_every_operation_with_a_summary_and_problem_errors(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "/api/v1/runs/{run_id}" in spec["paths"]
    assert "/healthz" in spec["paths"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary"), f"{method} {path} has no summary"
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert list(response["content"]) == ["application/problem+json"], (method, path, status)


async def test_metrics_are_served_in_prometheus_text_format(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'comet_http_requests_total{method="GET",route="/healthz",status="200"}' in response.text


def test_field_paths_read_like_the_request() -> None:
    assert field_path(("body", "ref")) == "body.ref"
    assert field_path(("body", "items", 0, "name")) == "body.items[0].name"
    assert field_path(()) == "request"
