"""Comet as real subprocesses on a database and topic namespace of their own, for tests that kill,
pause, restart or starve processes.

A cluster gets its own database (copied from a migrated template in a moment), because the
worker's dispatch sweep claims any queued attempt of its pool in its database: clusters sharing
the session's database would take each other's stages (one Comet is one database).
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from config.settings import OrchestratorSettings
from db.engine import asyncpg_dsn, make_engine, make_sessionmaker
from db.migrations import upgrade
from events.topics import Topics
from tests.integration.conftest import BASE_DB_URL, _with_database, create_database, drop_database
from tests.integration.processes import CometProcess, process_env


class Cluster:
    """Orchestrators and workers as subprocesses in a namespace and database of their own."""

    def __init__(self, common: dict[str, Any], root: Path, database_url: str) -> None:
        self.namespace = f"f{secrets.token_hex(4)}"
        self.database_url = database_url
        self.common = {
            **common,
            "database_url": database_url,
            "topic_namespace": self.namespace,
            "git_cache_dir": str(root / "git"),
        }
        self.root = root
        self.procs: list[CometProcess] = []
        self.engine: AsyncEngine = make_engine(OrchestratorSettings(database_url=database_url))
        self.sessions: async_sessionmaker[AsyncSession] = make_sessionmaker(self.engine)

    @property
    def topics(self) -> Topics:
        return Topics(self.namespace)

    def orchestrator(self, env: Mapping[str, object] | None = None) -> CometProcess:
        """An orchestrator; `env` adds or overrides settings (lower-case names, no prefix)."""
        env = process_env(self.common, reaper_interval_s="0.5", **(env or {}))
        proc = CometProcess(["orchestrator"], env, self.root / f"orchestrator-{len(self.procs)}.log").start()
        self.procs.append(proc)
        return proc

    def worker(
        self,
        pool: str = "default",
        *,
        lease_s: float = 3.0,
        drain_timeout_s: float = 300,
        heartbeat_s: float = 0.5,
        concurrency: int = 2,
        env: Mapping[str, object] | None = None,
    ) -> CometProcess:
        settings = process_env(
            self.common,
            lease_s=lease_s,
            drain_timeout_s=drain_timeout_s,
            heartbeat_s=heartbeat_s,
            kill_grace_s="2",
            workspace_dir=str(self.root / f"ws-{len(self.procs)}"),
            **(env or {}),
        )
        proc = CometProcess(
            ["worker", "--pool", pool, "--concurrency", str(concurrency)],
            settings,
            self.root / f"worker-{len(self.procs)}.log",
        ).start()
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.log.name}\n{p.output()[-4000:]}" for p in self.procs)

    async def diagnose(self, run_id: uuid.UUID) -> str:
        """What a stuck run's rows, its unpublished events and the orchestrators' consumer group
        say: for a failure message, so a CI failure shows where the run stopped."""
        lines = [f"--- diagnosis of run {run_id}"]
        async with self.sessions() as session:
            attempts = await session.execute(
                text(
                    "SELECT s.name, s.status, a.number, a.status, a.worker_id, a.queued_at, a.started_at, "
                    "a.finished_at FROM stages s LEFT JOIN stage_attempts a ON a.stage_id = s.id "
                    "WHERE s.run_id = :r ORDER BY s.position, a.number"
                ),
                {"r": run_id},
            )
            lines.extend(f"stage/attempt {tuple(row)}" for row in attempts)
            events = await session.execute(
                text(
                    "SELECT id, topic, event_type, created_at, published_at FROM outbox "
                    "WHERE run_id = :r ORDER BY id"
                ),
                {"r": run_id},
            )
            lines.extend(f"outbox {tuple(row)}" for row in events)
            unpublished = await session.scalar(text("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
            lines.append(f"unpublished outbox rows: {unpublished}")
        admin = AIOKafkaAdminClient(bootstrap_servers=self.common["kafka_bootstrap_servers"])
        consumer = AIOKafkaConsumer(bootstrap_servers=self.common["kafka_bootstrap_servers"])
        try:
            await admin.start()
            await consumer.start()
            committed = await admin.list_consumer_group_offsets(self.topics.orchestrator_group)
            ends = await consumer.end_offsets(list(committed))
            for tp, meta in sorted(committed.items()):
                lines.append(f"orchestrator group {tp.topic}[{tp.partition}] at {meta.offset} of {ends[tp]}")
        except Exception as exc:  # noqa: BLE001  (a diagnosis never hides the failure it explains)
            lines.append(f"consumer group not read: {exc!r}")
        finally:
            await consumer.stop()
            await admin.close()
        return "\n".join(lines)


@pytest.fixture(scope="session")
async def template_database(services_up: None) -> AsyncIterator[str]:
    """A migrated database that clusters are copied from (CREATE DATABASE … TEMPLATE)."""
    name = f"comet_tpl_{secrets.token_hex(4)}"
    url = await create_database(name)
    await asyncio.to_thread(upgrade, url)
    yield name
    await drop_database(name)


@pytest.fixture
async def own_database(template_database: str) -> AsyncIterator[str]:
    """A migrated database of the test's own (no other test's relay or worker sees its rows)."""
    name = f"comet_own_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(asyncpg_dsn(BASE_DB_URL))
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    finally:
        await conn.close()
    try:
        yield _with_database(BASE_DB_URL, name)
    finally:
        await drop_database(name)


@pytest.fixture
async def cluster(common_env: dict[str, Any], tmp_path: Path, own_database: str) -> AsyncIterator[Cluster]:
    c = Cluster(common_env, tmp_path, own_database)
    try:
        yield c
    finally:
        await asyncio.to_thread(c.stop_all)
        await c.engine.dispose()


async def until(check: Callable[[], Any], timeout_s: float = 60.0, what: str = "condition") -> Any:
    """Poll `check()` (a coroutine function) until it returns something truthy; return that."""
    async with asyncio.timeout(timeout_s):
        while True:
            value = await check()
            if value:
                return value
            await asyncio.sleep(0.1)
    raise AssertionError(what)  # pragma: no cover - asyncio.timeout raises first
