"""The disaster-recovery drill (issue 11's first "Done when"), on the real services: a backup;
then 50 more webhooks and REST triggers whose runs execute; the database is dropped; restore;
`comet replay catch-up` applies what happened since the backup from the log; every acknowledged
webhook and trigger has exactly one run, and no stage ran twice (the stages' own marks say so,
also after the processes are started again on the restored database)."""

from __future__ import annotations

import asyncio
import collections
import json
import secrets
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import func, select

from api.app import create_app
from api.webhooks.signatures import sign
from cli.backup import backup, restore
from config.settings import ApiSettings, CommonSettings
from db.crypto import SecretBox
from db.engine import asyncpg_dsn, make_engine, make_sessionmaker
from db.models import OutboxEvent, Project, Run, Stage, StageAttempt, WebhookDelivery
from db.repositories.projects import add_webhook_secret
from events.catchup import catch_up
from tests.integration.cluster import Cluster, until
from tests.integration.conftest import BASE_DB_URL, TEST_JWT_SECRET, TEST_SECRET_KEY, make_repo
from tests.integration.helpers import add_project, owner_headers

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parents[1] / "fixtures" / "webhooks"


def _pipeline(marks: Path) -> str:
    mark = f'echo "$COMET_RUN_ID $COMET_STAGE $COMET_ATTEMPT" >> {marks}'
    return f"""
on:
  push: {{branches: [main]}}
stages:
  build: {{run: '{mark}'}}
  test: {{run: '{mark}', needs: [build]}}
"""


def _api(cluster: Cluster) -> Any:
    return create_app(
        ApiSettings(
            database_url=cluster.database_url,
            kafka_bootstrap_servers=cluster.common["kafka_bootstrap_servers"],
            topic_namespace=cluster.namespace,
            kafka_partitions=cluster.common["kafka_partitions"],
            jwt_secret=TEST_JWT_SECRET,
            secret_key=TEST_SECRET_KEY,
            rate_limits_enabled=False,
        )
    )


class Traffic:
    """Acknowledged webhooks (their delivery ids) and REST triggers (their run ids)."""

    def __init__(
        self, project_id: uuid.UUID, repo: str, sha: str, secret: str, headers: dict[str, str]
    ) -> None:
        self.project_id, self.repo, self.sha, self.secret, self.headers = (
            project_id,
            repo,
            sha,
            secret,
            headers,
        )
        self.deliveries: list[str] = []
        self.triggered: list[uuid.UUID] = []

    async def webhook(self, client: httpx.AsyncClient) -> None:
        body = json.loads((FIXTURES / "github" / "push_branch.json").read_text())
        body["ref"], body["after"] = "refs/heads/main", self.sha
        body["repository"]["full_name"] = self.repo
        for commit in body["commits"]:
            commit["added"], commit["modified"], commit["removed"] = [], ["src/app.py"], []
        body["head_commit"] = body["commits"][-1] | {"id": self.sha}
        raw = json.dumps(body).encode()
        delivery = str(uuid.uuid4())
        response = await client.post(
            "/api/v1/webhooks/github",
            content=raw,
            headers={
                "Content-Type": "application/json",
                "X-GitHub-Event": "push",
                "X-GitHub-Delivery": delivery,
                "X-Hub-Signature-256": sign(raw, self.secret.encode()),
            },
        )
        assert response.status_code == 202, response.text
        assert response.json()["outcome"] == "accepted"
        self.deliveries.append(delivery)

    async def trigger(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            f"/api/v1/projects/{self.project_id}/runs", json={"ref": "refs/heads/main"}, headers=self.headers
        )
        assert response.status_code == 202, response.text
        self.triggered.append(uuid.UUID(response.json()["run_id"]))


async def _settled(cluster: Cluster, runs: int) -> bool:
    """`runs` runs, all finished, and every event published."""
    async with cluster.sessions() as session:
        finished = await session.scalar(
            select(func.count()).select_from(Run).where(Run.finished_at.is_not(None))
        )
        unpublished = await session.scalar(
            select(func.count()).select_from(OutboxEvent).where(OutboxEvent.published_at.is_(None))
        )
    return finished == runs and unpublished == 0


def _marks(path: Path) -> collections.Counter[tuple[str, str]]:
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return collections.Counter((run, stage) for run, stage, _attempt in lines)


async def _recreate_empty(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(asyncpg_dsn(BASE_DB_URL))
    try:
        await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


@pytest.mark.timeout(600)
async def test_a_restored_backup_caught_up_from_the_log_has_every_acknowledged_run_once_and_no_stage_twice(
    cluster: Cluster, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.touch()
    path, sha = make_repo(tmp_path / "repo", {".comet.yml": _pipeline(marks), "src/app.py": "print('hi')\n"})
    project_id = await add_project(cluster.sessions, str(path))
    provider_repo = f"acme/dr{secrets.token_hex(4)}"
    async with cluster.sessions.begin() as session:
        project = await session.get(Project, project_id)
        assert project is not None
        project.provider, project.provider_repo = "github", provider_repo
        secret = await add_webhook_secret(session, SecretBox(TEST_SECRET_KEY), project_id)
    cluster.orchestrator()
    cluster.worker(concurrency=4)
    settings = CommonSettings(
        database_url=cluster.database_url,
        kafka_bootstrap_servers=cluster.common["kafka_bootstrap_servers"],
        topic_namespace=cluster.namespace,
    )

    app = _api(cluster)
    async with app.router.lifespan_context(app):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://comet.test")
        async with client:
            traffic = Traffic(
                project_id,
                provider_repo,
                sha,
                secret,
                await owner_headers(client, cluster.sessions, project_id),
            )
            for _ in range(3):  # history before the backup
                await traffic.webhook(client)
                await traffic.trigger(client)
            await until(lambda: _settled(cluster, 6), 120, "the runs before the backup")

            await asyncio.to_thread(backup, settings, tmp_path / "backup")

            for _ in range(25):  # 50 acknowledged after the backup, runs executing meanwhile
                await traffic.webhook(client)
                await traffic.trigger(client)
            await until(lambda: _settled(cluster, 56), 300, "the runs after the backup")
    async with cluster.sessions() as session:
        before = {
            (str(a.run_id), a.stage_id, a.number, a.status)
            for a in (await session.execute(select(StageAttempt))).scalars()
        }
    assert _marks(marks) == collections.Counter(dict.fromkeys(_marks(marks), 1))  # the pipeline ran once each
    await asyncio.to_thread(cluster.stop_all)
    await cluster.engine.dispose()

    # The disaster: the database is gone; a fresh, empty one takes its place.
    await _recreate_empty(cluster.database_url)
    await asyncio.to_thread(restore, settings, tmp_path / "backup")
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    try:
        result = await catch_up(sessions, settings.kafka_bootstrap_servers, cluster.topics)
        assert result.deliveries == 25

        async with sessions() as session:
            runs = (await session.execute(select(Run))).scalars().all()
            deliveries = {
                d.delivery_id: d for d in (await session.execute(select(WebhookDelivery))).scalars()
            }
            attempts = (await session.execute(select(StageAttempt))).scalars().all()
            stages = (await session.execute(select(Stage))).scalars().all()
        by_delivery = collections.Counter(
            r.trigger.get("delivery_id") for r in runs if r.trigger.get("kind") == "webhook"
        )
        assert all(by_delivery[d] == 1 for d in traffic.deliveries)
        assert all(deliveries[d].run_id is not None for d in traffic.deliveries)
        assert collections.Counter(r.id for r in runs if r.id in set(traffic.triggered)) == dict.fromkeys(
            traffic.triggered, 1
        )
        assert len(runs) == 56
        assert {r.status for r in runs} == {"succeeded"}
        assert len(stages) == 112
        assert {(str(a.run_id), a.stage_id, a.number, a.status) for a in attempts} == before
        assert all(n == 1 for n in collections.Counter((a.run_id, a.stage_id) for a in attempts).values())

        # Started again on the restored database: nothing runs twice, and new work runs.
        cluster.procs.clear()
        cluster.orchestrator()
        cluster.worker(concurrency=4)
        cluster.engine = engine
        cluster.sessions = sessions
        app = _api(cluster)
        async with app.router.lifespan_context(app):
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://comet.test")
            async with client:
                await traffic.trigger(client)
                await traffic.webhook(client)
                await until(lambda: _settled(cluster, 58), 120, "the runs after the restore")
        counted = _marks(marks)
        assert len(counted) == 58 * 2
        assert set(counted.values()) == {1}
    finally:
        await engine.dispose()
