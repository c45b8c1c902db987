"""Fixtures for integration tests on the real Kafka and PostgreSQL.

Each test session gets its own freshly migrated database and its own topic namespace, so runs
never see each other's rows or events. `platform` starts an orchestrator and workers in-process
(same event loop) against them; tests that kill processes start real subprocesses instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.app import create_app
from config.settings import (
    DEFAULT_DATABASE_URL,
    DEFAULT_KAFKA,
    ApiSettings,
    OrchestratorSettings,
    WorkerSettings,
)
from db.engine import asyncpg_dsn, make_engine, make_sessionmaker
from db.migrations import upgrade
from events.probe import kafka_answers
from orchestrator.service import OrchestratorService
from workers.service import WorkerService

BASE_DB_URL = os.environ.get("COMET_DATABASE_URL", DEFAULT_DATABASE_URL)
KAFKA = os.environ.get("COMET_KAFKA_BOOTSTRAP_SERVERS", DEFAULT_KAFKA)
TEST_SECRET_KEY = "test-secret-key-for-integration-tests-only"


def _with_database(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


async def create_database(name: str) -> str:
    conn = await asyncpg.connect(asyncpg_dsn(BASE_DB_URL))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return _with_database(BASE_DB_URL, name)


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(BASE_DB_URL))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def services_up() -> None:
    """Fail (never skip) when the services are not there: CI must start them."""
    try:
        conn = await asyncpg.connect(asyncpg_dsn(BASE_DB_URL), timeout=5)
        await conn.close()
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL is not reachable at {BASE_DB_URL} ({exc}); run `make services`")
    if not await kafka_answers(KAFKA, timeout_s=10):
        pytest.fail(f"Kafka is not reachable at {KAFKA}; run `make services`")


@pytest.fixture(scope="session")
async def database_url(services_up: None) -> AsyncIterator[str]:
    name = f"comet_test_{secrets.token_hex(4)}"
    url = await create_database(name)
    await asyncio.to_thread(upgrade, url)
    yield url
    await drop_database(name)


@pytest.fixture(scope="session")
def namespace() -> str:
    return f"t{secrets.token_hex(4)}"


@pytest.fixture(scope="session")
def common_env(database_url: str, namespace: str) -> dict[str, Any]:
    return {
        "database_url": database_url,
        "kafka_bootstrap_servers": KAFKA,
        "topic_namespace": namespace,
        "kafka_partitions": "3",
        # The notification tests' local receiver (http on loopback) is reachable; nothing else is.
        "outbound_allow": "127.0.0.1",
    }


@pytest.fixture(scope="session")
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(OrchestratorSettings(database_url=database_url))
    yield make_sessionmaker(engine)
    await engine.dispose()


@dataclass
class Platform:
    """An orchestrator and workers running as tasks in the test's event loop."""

    orchestrator: OrchestratorService
    workers: list[WorkerService] = field(default_factory=list)
    stops: list[asyncio.Event] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


@pytest.fixture(scope="session")
async def platform(
    common_env: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    root = tmp_path_factory.mktemp("platform")
    orch = OrchestratorService(
        OrchestratorSettings(**common_env, git_cache_dir=str(root / "orch-git"), secret_key=TEST_SECRET_KEY)
    )
    platform = Platform(orch)
    stop = asyncio.Event()
    platform.stops.append(stop)
    platform.tasks.append(asyncio.create_task(orch.run(stop)))
    for i in range(2):
        worker = WorkerService(
            WorkerSettings(
                **common_env,
                concurrency=4,
                workspace_dir=str(root / f"ws{i}"),
                git_cache_dir=str(root / f"git{i}"),
                heartbeat_s=1.0,
                lease_s=10.0,
                kill_grace_s=2.0,
                drain_timeout_s=10.0,
                log_flush_s=0.1,
                secret_key=TEST_SECRET_KEY,
            ),
            worker_id=f"test-worker-{i}",
        )
        platform.workers.append(worker)
        wstop = asyncio.Event()
        platform.stops.append(wstop)
        platform.tasks.append(asyncio.create_task(worker.run(wstop)))
    await asyncio.wait_for(orch.consumer.started.wait(), 60)
    for worker in platform.workers:
        await asyncio.wait_for(worker.consumer.started.wait(), 60)
    yield platform
    for s in platform.stops:
        s.set()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.gather(*platform.tasks, return_exceptions=True), 60)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=Test", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def make_repo(path: Path, files: dict[str, Any]) -> tuple[Path, str]:
    """A real git repository at `path` with `files` committed on main; returns (path, sha)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    for name, content in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path, git(path, "rev-parse", "HEAD")


TEST_JWT_SECRET = "test-jwt-secret-for-integration-tests-only"


@pytest.fixture(scope="session")
async def api_client(common_env: dict[str, Any]) -> AsyncIterator[httpx.AsyncClient]:
    """The real API app on the platform's database and topics, over an in-process transport."""
    settings = ApiSettings(
        **common_env,
        jwt_secret=TEST_JWT_SECRET,
        secret_key=TEST_SECRET_KEY,
        # Every test calls from one address; the rate limits have tests of their own.
        rate_limits_enabled=False,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://comet.test") as client:
            yield client


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Outage tests stop and restart the shared services: run them after everything else."""
    items.sort(key=lambda item: item.get_closest_marker("outage") is not None)
