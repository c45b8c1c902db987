"""Resilience on the real services: a run's events published out of order, duplicated and stale
still end it in the right state; a poison event goes to the dead letters while every other run
keeps finishing; processes started before Postgres or Kafka wait for them, then serve.

The first two publish attempt events straight to the stage-results topic, for stages of a pool
that no worker serves (so nothing but the test reports on them).
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import make_url, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import DeadLetter, OutboxEvent, StageAttempt, Worker
from events.envelope import new_envelope
from events.producer import EventProducer, OutgoingMessage
from events.topics import Topics
from schemas.events import AttemptFinished, AttemptStarted, EventPayload
from tests.integration.cluster import Cluster, until
from tests.integration.conftest import KAFKA, Platform, make_repo
from tests.integration.helpers import (
    add_project,
    attempts_of,
    owner_headers,
    stages_of,
    start_run,
    wait_for_run,
)
from tests.integration.processes import CometProcess
from tests.integration.tcp_proxy import TcpProxy, free_port

pytestmark = pytest.mark.integration

T1 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _unserved_pool() -> str:
    return f"nobody-{secrets.token_hex(3)}"


async def _queued(
    sessions: async_sessionmaker[AsyncSession], run_id: uuid.UUID, stage: str, number: int
) -> StageAttempt:
    async def attempt() -> StageAttempt | None:
        stages = await stages_of(sessions, run_id)
        if stage not in stages:
            return None
        for a in await attempts_of(sessions, run_id):
            if a.number == number and a.stage_id == stages[stage].id:
                return a
        return None

    found: StageAttempt = await until(attempt, what=f"{stage}#{number} queued")
    return found


class Reporter:
    """Publishes a stage's attempt events straight to the stage-results topic, as a worker's relay
    would, in whatever order a test chooses."""

    def __init__(self, topics: Topics, run_id: uuid.UUID) -> None:
        self.topics = topics
        self.run_id = run_id
        self.producer = EventProducer(KAFKA)

    async def publish(self, *payloads: EventPayload) -> None:
        await self.producer.send_many(
            [
                OutgoingMessage(
                    self.topics.stage_results,
                    str(self.run_id).encode(),
                    new_envelope(p, key=str(self.run_id)).encode(),
                )
                for p in payloads
            ]
        )

    def started(self, attempt: StageAttempt, stage: str, at: datetime) -> AttemptStarted:
        return AttemptStarted(
            run_id=self.run_id,
            stage_id=attempt.stage_id,
            attempt_id=attempt.id,
            stage=stage,
            number=attempt.number,
            worker_id="test",
            fencing_token=1,
            started_at=at,
        )

    def finished(
        self, attempt: StageAttempt, stage: str, at: datetime, status: str = "succeeded", **extra: Any
    ) -> AttemptFinished:
        return AttemptFinished(
            run_id=self.run_id,
            stage_id=attempt.stage_id,
            attempt_id=attempt.id,
            stage=stage,
            number=attempt.number,
            status=status,
            exit_code=0 if status == "succeeded" else 1,
            worker_id="test",
            started_at=at,
            finished_at=at + timedelta(seconds=1),
            **extra,
        )


async def test_events_published_out_of_order_duplicated_and_stale_end_the_run_in_the_right_state(
    platform: Platform, sessions: async_sessionmaker[AsyncSession], namespace: str, tmp_path: Path
) -> None:
    pool = _unserved_pool()
    definition = f"""
stages:
  a: {{pool: {pool}, run: 'true'}}
  b: {{pool: {pool}, needs: [a], retry: 1, run: 'true'}}
"""
    repo, _ = make_repo(tmp_path / "repo", {".comet.yml": definition})
    project = await add_project(sessions, str(repo))
    run_id = await start_run(sessions, Topics(namespace), project)
    report = Reporter(Topics(namespace), run_id)
    try:
        a1 = await _queued(sessions, run_id, "a", 1)
        # a#1's result overtakes its start; the same result comes again (in a new envelope, so the
        # inbox cannot absorb it and decide() must); then the late start.
        await report.publish(report.finished(a1, "a", T1))
        await report.publish(report.finished(a1, "a", T1), report.started(a1, "a", T1))
        b1 = await _queued(sessions, run_id, "b", 1)
        # b#1 fails (retry: 1 queues b#2); its start arrives after, stale.
        await report.publish(
            report.finished(b1, "b", T1 + timedelta(seconds=5), "failed", failure_kind="script_failure"),
            report.started(b1, "b", T1 + timedelta(seconds=5)),
        )
        b2 = await _queued(sessions, run_id, "b", 2)
        # b#2's result overtakes its start too; a stale result of b#1 trails behind.
        await report.publish(
            report.finished(b2, "b", T1 + timedelta(seconds=9)),
            report.started(b2, "b", T1 + timedelta(seconds=9)),
            report.finished(b1, "b", T1 + timedelta(seconds=5)),
        )
        run = await wait_for_run(sessions, run_id, timeout_s=60)
    finally:
        await report.producer.stop()

    assert run.status == "succeeded", run.failure_reason
    assert run.started_at == T1, "the run started when its first stage started on its worker"
    stages = await stages_of(sessions, run_id)
    assert (stages["a"].status, stages["a"].attempt) == ("succeeded", 1)
    assert (stages["a"].started_at, stages["a"].finished_at) == (T1, T1 + timedelta(seconds=1))
    assert (stages["b"].status, stages["b"].attempt) == ("succeeded", 2)
    assert stages["b"].started_at == T1 + timedelta(seconds=9)
    async with sessions() as session:
        notes = (
            await session.scalars(
                select(OutboxEvent.envelope)
                .where(OutboxEvent.run_id == run_id, OutboxEvent.event_type == "run.note")
                .order_by(OutboxEvent.id)
            )
        ).all()
    said = [n["payload"]["note"] for n in notes]
    assert any("start of a#1 arrived with the stage already succeeded" in n for n in said), said
    assert any("result of a#1 arrived with the stage already succeeded" in n for n in said), said
    assert any("start of b#1 is stale" in n for n in said), said
    assert any("result of b#1 is stale" in n for n in said), said


async def test_a_poison_event_is_dead_lettered_and_every_other_run_keeps_finishing(
    platform: Platform,
    sessions: async_sessionmaker[AsyncSession],
    api_client: httpx.AsyncClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    pool = _unserved_pool()
    poisoned_repo, _ = make_repo(
        tmp_path / "poisoned", {".comet.yml": f"stages:\n  a: {{pool: {pool}, run: 'true'}}\n"}
    )
    healthy_repo, sha = make_repo(tmp_path / "healthy", {".comet.yml": "stages:\n  a: {run: 'true'}\n"})
    poisoned_project = await add_project(sessions, str(poisoned_repo))
    healthy_project = await add_project(sessions, str(healthy_repo))
    topics = Topics(namespace)
    poisoned = await start_run(sessions, topics, poisoned_project)
    report = Reporter(topics, poisoned)
    try:
        a1 = await _queued(sessions, poisoned, "a", 1)
        # Valid by the schema, but no database column takes a failure kind this long: the
        # orchestrator's transaction fails on it every time.
        poison = report.finished(a1, "a", T1, "failed", failure_kind="k" * 100)
        await report.publish(poison)
        others = [await start_run(sessions, topics, healthy_project, sha=sha) for _ in range(8)]
        finished = [await wait_for_run(sessions, run_id, timeout_s=90) for run_id in others]
        letter = await until(lambda: _dead_letter_of(sessions, poisoned), what="the poison dead-lettered")
        # The partition moved on: the real result of the same attempt is applied.
        await report.publish(report.finished(a1, "a", T1))
        recovered = await wait_for_run(sessions, poisoned, timeout_s=60)
    finally:
        await report.producer.stop()

    assert {r.status for r in finished} == {"succeeded"}
    assert letter.kind == "handler_failed"
    assert letter.event_type == "attempt.finished"
    assert letter.consumer == topics.orchestrator_group
    assert "handler failed 3 times" in letter.reason
    assert recovered.status == "succeeded"
    headers = await owner_headers(api_client, sessions, poisoned_project)
    shown = (await api_client.get(f"/api/v1/runs/{poisoned}", headers=headers)).json()
    assert [d["event_type"] for d in shown["dead_letters"]] == ["attempt.finished"]
    assert "handler failed 3 times" in shown["dead_letters"][0]["reason"]
    metrics = (await api_client.get("/metrics")).text
    assert (
        f'comet_dead_letters{{consumer="{topics.orchestrator_group}",kind="handler_failed"}} 1.0' in metrics
    )


async def _said(proc: CometProcess, text: str) -> str | None:
    """The process's log line that contains `text`, if it wrote one yet."""
    return next((line for line in proc.output().splitlines() if text in line), None)


async def _dead_letter_of(sessions: async_sessionmaker[AsyncSession], run_id: uuid.UUID) -> DeadLetter | None:
    async with sessions() as session:
        letter: DeadLetter | None = (
            await session.scalars(select(DeadLetter).where(DeadLetter.run_id == run_id))
        ).first()
        return letter


async def test_processes_started_before_postgres_and_kafka_wait_for_them_then_serve(
    cluster: Cluster, tmp_path: Path
) -> None:
    url = make_url(cluster.database_url)
    database = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    kafka_host, kafka_port = KAFKA.rsplit(":", 1)
    broker = TcpProxy(kafka_host, int(kafka_port))
    db_port, kafka_bootstrap_port = free_port(), free_port()
    # Nothing listens on these ports yet: as far as the processes know, both services are down.
    via_proxies: dict[str, object] = {
        "database_url": url.set(host="127.0.0.1", port=db_port).render_as_string(hide_password=False),
        "kafka_bootstrap_servers": f"127.0.0.1:{kafka_bootstrap_port}",
    }
    health = free_port()
    orchestrator = cluster.orchestrator(via_proxies)
    worker = cluster.worker(env={**via_proxies, "health_port": health})
    try:
        for proc in (orchestrator, worker):
            said = await until(
                functools.partial(_said, proc, f"waiting for PostgreSQL at 127.0.0.1:{db_port}"),
                timeout_s=30,
                what="a process says what it waits for",
            )
            assert f"Kafka at 127.0.0.1:{kafka_bootstrap_port}" in said
        await asyncio.sleep(2)
        assert orchestrator.running, orchestrator.output()
        assert worker.running, worker.output()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{health}") as probe:
            waiting = await probe.get("/readyz")
            assert waiting.status_code == 503
            assert f"waiting for PostgreSQL at 127.0.0.1:{db_port}" in waiting.json()["detail"]

        await database.start(db_port)
        await broker.start(kafka_bootstrap_port)
        repo, _ = make_repo(tmp_path / "repo", {".comet.yml": "stages:\n  a: {run: 'echo served'}\n"})
        project = await add_project(cluster.sessions, str(repo))
        run_id = await start_run(cluster.sessions, cluster.topics, project)
        run = await wait_for_run(cluster.sessions, run_id, timeout_s=90)
    finally:
        await database.stop()
        await broker.stop()

    assert run.status == "succeeded", cluster.logs()
    async with cluster.sessions() as session:
        assert (await session.scalars(select(Worker.pool))).all() == ["default"]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{health}") as probe:
        ready = await probe.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "detail": "consuming the dispatches of pool default"}


async def test_a_stages_times_are_its_attempts_times_on_the_worker(
    platform: Platform, sessions: async_sessionmaker[AsyncSession], namespace: str, tmp_path: Path
) -> None:
    repo, _ = make_repo(tmp_path / "repo", {".comet.yml": "stages:\n  a: {run: 'sleep 0.3'}\n"})
    project = await add_project(sessions, str(repo))
    run_id = await start_run(sessions, Topics(namespace), project)
    run = await wait_for_run(sessions, run_id, timeout_s=60)

    assert run.status == "succeeded"
    stage = (await stages_of(sessions, run_id))["a"]
    (attempt,) = await attempts_of(sessions, run_id)
    assert stage.started_at == attempt.started_at
    assert stage.finished_at == attempt.finished_at
    assert run.started_at == attempt.started_at
