"""Nothing acknowledged is lost: with Kafka stopped, deliveries are still acknowledged and each
becomes its run once Kafka is back; with Postgres stopped, the API answers 503 with Retry-After
and nothing is half-written. These stop the services `make services` started, so they run last."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import WebhookDelivery
from tests.integration.conftest import Platform
from tests.integration.helpers import wait_for_run
from tests.integration.test_webhooks import _repo, _wait_for_delivery_run, github_push, post_github

pytestmark = [pytest.mark.integration, pytest.mark.outage]

SCRIPTS = Path(__file__).parents[2] / "scripts"


def _service(name: str, action: str) -> None:
    result = subprocess.run(
        [str(SCRIPTS / f"{name}.sh"), action], check=False, capture_output=True, text=True, timeout=180
    )
    if result.returncode != 0:
        pytest.fail(
            f"scripts/{name}.sh {action} failed (the outage tests need `make services`):\n{result.stderr}"
        )


async def test_deliveries_acknowledged_while_kafka_is_down_all_become_runs_when_it_is_back(
    platform: Platform,
    api_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    repo = await _repo(sessions, tmp_path, "github")
    _service("kafka", "stop")
    try:
        acks = [await post_github(api_client, repo, github_push(repo)) for _ in range(5)]
    finally:
        await asyncio.to_thread(_service, "kafka", "start")

    assert [a.status_code for a in acks] == [202] * 5
    for ack in acks:
        row = await _wait_for_delivery_run(sessions, ack.json()["id"], timeout_s=180)
        assert row.run_id is not None, row.reason
        run = await wait_for_run(sessions, row.run_id, timeout_s=120)
        assert run.status == "succeeded", run.failure_reason


async def test_with_postgres_down_the_api_answers_503_and_nothing_is_half_written(
    platform: Platform,
    api_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    repo = await _repo(sessions, tmp_path, "github")
    delivery = str(uuid.uuid4())
    body = github_push(repo)

    await asyncio.to_thread(_service, "postgres", "stop")
    try:
        during = await post_github(api_client, repo, body, delivery=delivery)
        health = await api_client.get("/readyz")
    finally:
        await asyncio.to_thread(_service, "postgres", "start")

    assert during.status_code == 503
    assert during.headers["content-type"].startswith("application/problem+json")
    assert int(during.headers["retry-after"]) > 0
    assert health.status_code == 503
    async with sessions() as session:
        count = await session.scalar(
            select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.delivery_id == delivery)
        )
    assert count == 0
    after = await post_github(api_client, repo, json.loads(json.dumps(body)), delivery=delivery)
    assert after.status_code == 202, after.text
    row = await _wait_for_delivery_run(sessions, after.json()["id"], timeout_s=120)
    assert row.run_id is not None
    assert (await wait_for_run(sessions, row.run_id, timeout_s=120)).status == "succeeded"
