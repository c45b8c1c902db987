"""The commit status queued for a run's state carries the run's test summary (the reporter's
consumer side, on the API's database: what would be sent to GitHub is read from the queue)."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.settings import ApiSettings
from db.crypto import SecretBox
from db.models import CommitStatusReport
from events.consumer import Received
from events.envelope import Envelope
from orchestrator.status_reporter import StatusReporter
from schemas.events import RunStatusChanged
from tests.integration.api.conftest import MakeAccount
from tests.integration.api.results_data import Case, Seeder

pytestmark = pytest.mark.integration


def _status_changed(run_id: str, project_id: str, status: str, reason: str | None) -> Received:
    payload = RunStatusChanged(
        run_id=uuid.UUID(run_id),
        project_id=uuid.UUID(project_id),
        status=status,
        failure_reason=reason,
        at=datetime.now(UTC),
    ).model_dump(mode="json")
    envelope = Envelope(
        event_id=uuid.uuid4(),
        type=RunStatusChanged.TYPE,
        occurred_at=datetime.now(UTC),
        key=run_id,
        correlation_id="test",
        payload=payload,
    )
    return Received(envelope, "run-status", 0, 0)


async def _descriptions(sessions: async_sessionmaker[AsyncSession], run_id: str) -> list[Any]:
    async with sessions() as session:
        rows = await session.scalars(
            select(CommitStatusReport)
            .where(CommitStatusReport.run_id == uuid.UUID(run_id))
            .order_by(CommitStatusReport.created_at)
        )
        return [r.request["json"]["description"] for r in rows.all()]


async def test_the_queued_commit_status_says_how_the_tests_went(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    api_sessions: async_sessionmaker[AsyncSession],
    api_settings: ApiSettings,
) -> None:
    owner = await make_account()
    body = {
        "name": f"gh-{secrets.token_hex(4)}",
        "repo_url": "https://github.com/acme/app.git",
        "provider": "github",
        "provider_repo": f"acme/app-{secrets.token_hex(4)}",
    }
    project = (await client.post("/api/v1/projects", json=body, headers=owner.headers)).json()
    integration = await client.post(
        f"/api/v1/projects/{project['id']}/integrations",
        json={"kind": "commit_status", "token": "provider-token"},
        headers=owner.headers,
    )
    assert integration.status_code == 201, integration.text
    seed = Seeder(client, api_sessions, owner, project["id"])
    run = await seed.run(sha="b" * 40)
    reporter = StatusReporter(
        api_sessions,
        SecretBox(api_settings.secret_key.get_secret_value()),
        consumer_name=f"reporter-{secrets.token_hex(4)}",
        public_url="http://comet.test",
    )

    await reporter.handle([_status_changed(run.id, project["id"], "running", None)])
    cases = [Case(f"test_{i}") for i in range(1200)] + [Case("test_x", "failed"), Case("test_y", "failed")]
    cases += [Case("test_q", "failed", quarantined=True), Case("test_f", flaky=True)]
    await seed.stage(run, "unit", [cases])
    await reporter.handle([_status_changed(run.id, project["id"], "failed", "stage 'unit' failed")])

    assert await _descriptions(api_sessions, run.id) == [
        "Running",
        "Failed: stage 'unit' failed — 3 failed, 1 flaky, 1 quarantined of 1,204 tests",
    ]
