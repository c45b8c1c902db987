"""The scaling signals per pool in `GET /queues` and as `comet_queue_*` gauges in `/metrics`: queued
and running stages, the oldest wait, busy and total slots, and the stages no live worker can take
(none with their labels) with the reason."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.integration.api.conftest import MakeAccount, MakeProject

pytestmark = pytest.mark.integration


async def _attempt(
    session: AsyncSession, project_id: str, pool: str, status: str, labels: dict[str, str]
) -> None:
    run_id = (
        await session.execute(
            text(
                "INSERT INTO runs (id, project_id, number, status, ref, trigger, variables) VALUES "
                "(gen_random_uuid(), :p, (SELECT coalesce(max(number), 0) + 1 FROM runs WHERE project_id = :p), "
                "'running', 'refs/heads/main', '{}', '{}') RETURNING id"
            ),
            {"p": project_id},
        )
    ).scalar_one()
    stage_id = (
        await session.execute(
            text(
                "INSERT INTO stages (id, run_id, name, base_name, position, matrix, status, needs, pool, spec, attempt) "
                "VALUES (gen_random_uuid(), :r, 'build', 'build', 0, '{}', :status, '{}', :pool, '{}', 1) RETURNING id"
            ),
            {"r": run_id, "pool": pool, "status": status},
        )
    ).scalar_one()
    await session.execute(
        text(
            "INSERT INTO stage_attempts (id, run_id, stage_id, number, status, pool, labels, queued_at) "
            "VALUES (gen_random_uuid(), :r, :s, 1, :status, :pool, CAST(:labels AS jsonb), now() - interval '5 seconds')"
        ),
        {"r": run_id, "s": stage_id, "pool": pool, "status": status, "labels": json.dumps(labels)},
    )


def _gauges(exposition: str, pool: str) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name.startswith("comet_queue_") and sample.labels.get("pool") == pool
    }


async def test_queues_and_metrics_give_each_pools_signals_and_why_a_labelled_stage_waits(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    make_project: MakeProject,
    api_sessions: async_sessionmaker[AsyncSession],
) -> None:
    owner = await make_account()
    project = await make_project(owner)
    pool = f"linux-{uuid.uuid4().hex[:6]}"
    async with api_sessions() as session:
        await session.execute(
            text(
                "INSERT INTO workers (id, pool, labels, concurrency, busy, hostname, pid, status) "
                "VALUES (:id, :pool, CAST(:labels AS jsonb), 4, 1, 'host', 42, 'active')"
            ),
            {
                "id": f"w-{uuid.uuid4().hex[:6]}",
                "pool": pool,
                "labels": json.dumps({"arch": "amd64", "os": "linux"}),
            },
        )
        await _attempt(session, project["id"], pool, "queued", {"arch": "arm64"})
        await _attempt(session, project["id"], pool, "queued", {"arch": "amd64"})
        await _attempt(session, project["id"], pool, "running", {})
        await session.commit()

    response = await client.get("/api/v1/queues", headers=owner.headers)

    assert response.status_code == 200, response.text
    queue = next(q for q in response.json()["data"] if q["pool"] == pool)
    assert (queue["depth"], queue["running"], queue["workers"], queue["slots"], queue["busy"]) == (
        2,
        1,
        1,
        4,
        1,
    )
    assert queue["unschedulable"] is True
    assert queue["unschedulable_stages"] == 1
    assert queue["oldest_wait_s"] >= 5
    assert queue["reason"].startswith(f"no live worker in pool {pool} has arch=arm64"), queue["reason"]

    await asyncio.sleep(1.1)  # the gauges are read at most once a second
    gauges = _gauges((await client.get("/metrics")).text, pool)

    assert gauges["comet_queue_queued_stages"] == 2
    assert gauges["comet_queue_running_stages"] == 1
    assert gauges["comet_queue_busy_slots"] == 1
    assert gauges["comet_queue_total_slots"] == 4
    assert gauges["comet_queue_unschedulable"] == 1
    assert gauges["comet_queue_unschedulable_stages"] == 1
    assert gauges["comet_queue_oldest_wait_seconds"] >= 5


async def test_a_pool_whose_waiting_stages_a_live_worker_can_take_is_not_unschedulable(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    make_project: MakeProject,
    api_sessions: async_sessionmaker[AsyncSession],
) -> None:
    owner = await make_account()
    project = await make_project(owner)
    pool = f"arm-{uuid.uuid4().hex[:6]}"
    async with api_sessions() as session:
        await session.execute(
            text(
                "INSERT INTO workers (id, pool, labels, concurrency, busy, hostname, pid, status) "
                "VALUES (:id, :pool, CAST(:labels AS jsonb), 2, 0, 'host', 43, 'active')"
            ),
            {"id": f"w-{uuid.uuid4().hex[:6]}", "pool": pool, "labels": json.dumps({"arch": "arm64"})},
        )
        await _attempt(session, project["id"], pool, "queued", {"arch": "arm64"})
        await session.commit()

    response = await client.get("/api/v1/queues", headers=owner.headers)

    queue = next(q for q in response.json()["data"] if q["pool"] == pool)
    assert queue["depth"] == 1
    assert queue["unschedulable"] is False
    assert queue["unschedulable_stages"] == 0
    assert queue["reason"] is None
