"""Nothing acknowledged is lost: with Kafka stopped, deliveries are still acknowledged and each
becomes its run once Kafka is back; with Postgres stopped, the API answers 503 with Retry-After
and nothing is half-written; runs keep finishing through broker restarts under load, and stages
that finish while Postgres restarts keep their results. These stop the services `make services`
started, so they run last."""

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

from db.models import DeadLetter, StageAttempt, WebhookDelivery
from tests.integration.cluster import Cluster, until
from tests.integration.conftest import Platform, make_repo
from tests.integration.helpers import add_project, start_run, wait_for_run
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


FOUR_PLUS_ONE = """
stages:
  a: {run: "sleep 0.2"}
  b: {run: "sleep 0.2"}
  c: {run: "sleep 0.2"}
  d: {run: "sleep 0.2"}
  e: {needs: [a, b, c, d], run: "sleep 0.2"}
"""


@pytest.mark.timeout(480)  # five broker restarts: each start of the JVM takes 5-15 s here
async def test_every_run_finishes_through_five_broker_restarts_under_load(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Runs keep being created (their events wait in the outbox) while the broker is stopped and
    started five times under two orchestrators and two workers, each with a relay of its own."""
    repo, sha = make_repo(tmp_path / "repo", {".comet.yml": FOUR_PLUS_ONE})
    project = await add_project(cluster.sessions, str(repo))
    for i in (1, 2):
        cluster.orchestrator({"instance_id": f"orchestrator-{i}"})
        cluster.worker(concurrency=4, lease_s=15.0, heartbeat_s=1.0, env={"instance_id": f"worker-{i}"})
    run_ids: list[uuid.UUID] = []
    restarts_done = asyncio.Event()

    async def trigger() -> None:
        while not restarts_done.is_set() or len(run_ids) < 40:
            run_ids.append(await start_run(cluster.sessions, cluster.topics, project, sha=sha))
            await asyncio.sleep(1.0)

    triggering = asyncio.create_task(trigger())
    try:
        for _ in range(5):
            await asyncio.sleep(2)
            await asyncio.to_thread(_service, "kafka", "stop")
            await asyncio.sleep(1)
            await asyncio.to_thread(_service, "kafka", "start")
    finally:
        restarts_done.set()
        await triggering
    runs = []
    for run_id in run_ids:
        try:
            runs.append(await wait_for_run(cluster.sessions, run_id, timeout_s=240))
        except AssertionError as stuck:
            raise AssertionError(f"{stuck}\n{await cluster.diagnose(run_id)}\n{cluster.logs()}") from None

    assert {r.status for r in runs} == {"succeeded"}, cluster.logs()
    async with cluster.sessions() as session:
        numbers = (await session.scalars(select(StageAttempt.number))).all()
        letters = await session.scalar(select(func.count()).select_from(DeadLetter))
    assert len(numbers) == 5 * len(run_ids)
    assert set(numbers) == {1}, "a stage ran twice"
    assert letters == 0


@pytest.mark.timeout(300)
async def test_stages_that_finish_while_postgres_restarts_are_kept_as_their_first_attempt(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Each worker holds its finished attempts' results (and logs) through the outage and commits
    them after; leases (3 s) shorter than the outage are not judged until heartbeats resumed."""
    repo, sha = make_repo(tmp_path / "repo", {".comet.yml": "stages:\n  work: {run: 'sleep 3; echo done'}\n"})
    project = await add_project(cluster.sessions, str(repo))
    cluster.orchestrator()
    workers = [cluster.worker(concurrency=4, lease_s=3.0, heartbeat_s=0.5) for _ in range(2)]
    run_ids = [await start_run(cluster.sessions, cluster.topics, project, sha=sha) for _ in range(8)]
    await until(lambda: _running(cluster, 8), timeout_s=60, what="all eight stages running")

    await asyncio.to_thread(_service, "postgres", "stop")
    try:
        await asyncio.sleep(5)  # every stage finishes while the database is down
    finally:
        await asyncio.to_thread(_service, "postgres", "start")
    runs = [await wait_for_run(cluster.sessions, run_id, timeout_s=120) for run_id in run_ids]

    assert {r.status for r in runs} == {"succeeded"}, cluster.logs()
    async with cluster.sessions() as session:
        attempts = (await session.scalars(select(StageAttempt))).all()
    assert sorted((a.number, a.status) for a in attempts) == [(1, "succeeded")] * 8
    for worker in workers:
        assert "attempt crashed" not in worker.output()
        assert worker.running


async def _running(cluster: Cluster, count: int) -> bool:
    async with cluster.sessions() as session:
        running = await session.scalar(
            select(func.count()).select_from(StageAttempt).where(StageAttempt.status == "running")
        )
    return running == count
