"""Liveness and readiness with the real services up."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from fastapi import FastAPI

from api.readiness import Readiness

pytestmark = pytest.mark.integration


async def test_healthz_answers_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_200_when_postgres_and_kafka_answer(client: httpx.AsyncClient) -> None:
    # Other suites share (and fault-test) this broker: allow it a moment to answer again.
    deadline = time.monotonic() + 30
    response = await client.get("/readyz")
    while response.status_code != 200 and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "kafka": "ok"}}


async def test_readyz_names_the_service_that_does_not_answer(
    client: httpx.AsyncClient, api_app: FastAPI
) -> None:
    readiness = Readiness(api_app.state.backbone.engine, "127.0.0.1:1", timeout_s=1.0)
    api_app.state.readiness, real = readiness, api_app.state.readiness
    try:
        response = await client.get("/readyz")
    finally:
        api_app.state.readiness = real
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["checks"] == {"database": "ok", "kafka": "unavailable"}
    assert response.json()["detail"] == "Not ready: kafka unavailable."
