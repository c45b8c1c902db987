"""Liveness and readiness with the real services up."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.integration


async def test_healthz_answers_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_200_when_postgres_and_kafka_answer(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "kafka": "ok"}}
