"""`comet replay webhooks` and `POST /projects/{id}/webhooks/replay` on the real services: a dry run
says what each stored delivery would do and changes nothing; the default replay gives a delivery
that never got its run that run, once; `--force` starts exactly one new run per delivery whose
trigger says `replay`; the API checks who asks and what is asked."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.auth.passwords import hash_password
from api.webhooks.signatures import sign
from cli.replay_webhooks import Options, ReplayWebhooksError, replay
from config.settings import OrchestratorSettings
from db.models import AuditEntry, Membership, Run, WebhookDelivery
from db.repositories import users
from db.repositories import webhooks as deliveries
from orchestrator.webhook_replay import Counts, Judgement
from tests.integration.conftest import Platform, git
from tests.integration.test_webhooks import Repo, _repo, delivery_row, github_push, post_github
from workers.git import MirrorCache

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]


async def _processed(sessions: async_sessionmaker[AsyncSession], row_id: str) -> WebhookDelivery:
    async with asyncio.timeout(60):
        while True:
            row = await delivery_row(sessions, row_id)
            if row.run_id is not None or row.outcome == "ignored":
                return row
            await asyncio.sleep(0.05)


async def _stored_without_its_event(
    sessions: async_sessionmaker[AsyncSession], repo: Repo, body: dict[str, Any]
) -> uuid.UUID:
    """A delivery acknowledged and stored whose `webhook.received` event never reached the
    orchestrator (the outage a replay is for)."""
    raw = json.dumps(body).encode()
    delivery_id = str(uuid.uuid4())
    async with sessions.begin() as session:
        row_id = await deliveries.record_delivery(
            session,
            provider="github",
            delivery_id=delivery_id,
            project_id=repo.project_id,
            event="push",
            action=None,
            outcome="accepted",
            reason=None,
            headers={
                "X-GitHub-Event": "push",
                "X-GitHub-Delivery": delivery_id,
                "X-Hub-Signature-256": sign(raw, b"x"),
            },
            body=raw,
        )
    assert row_id is not None
    return row_id


async def _replay_runs(sessions: async_sessionmaker[AsyncSession], row_id: uuid.UUID) -> list[Run]:
    async with sessions() as session:
        stmt = select(Run).where(
            Run.trigger["kind"].astext == "replay", Run.trigger["delivery"].astext == str(row_id)
        )
        return list((await session.scalars(stmt)).all())


async def _wait_for_replay_runs(
    sessions: async_sessionmaker[AsyncSession], row_id: uuid.UUID, count: int
) -> list[Run]:
    async with asyncio.timeout(60):
        while len(await _replay_runs(sessions, row_id)) < count:
            await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # anything extra would show up by now: the event was consumed
    return await _replay_runs(sessions, row_id)


async def _replay_events(sessions: async_sessionmaker[AsyncSession], project_id: uuid.UUID) -> int:
    """`webhook.received` events a replay wrote for the project."""
    async with sessions() as session:
        found = await session.execute(
            text(
                "SELECT count(*) FROM outbox WHERE event_type = 'webhook.received'"
                " AND envelope->'payload'->>'replay_id' IS NOT NULL"
                " AND envelope->'payload'->>'project_id' = :p"
            ),
            {"p": str(project_id)},
        )
        return int(found.scalar_one())


class World:
    """A project with three stored deliveries: a push to main that got its run, a push to a branch
    `on:` does not match, and a push to main stored during an 'outage' that never got its run."""

    def __init__(
        self, repo: Repo, ran: uuid.UUID, ignored: uuid.UUID, lost: uuid.UUID, settings: OrchestratorSettings
    ):
        self.repo, self.ran, self.ignored, self.lost, self.settings = repo, ran, ignored, lost, settings
        self.git = MirrorCache(Path(settings.git_cache_dir))

    async def replay(self, **options: Any) -> tuple[Counts, list[Judgement]]:
        lines: list[Judgement] = []
        opts = Options(since="1h", project=str(self.repo.project_id), **options)
        counts = await replay(self.settings, opts, emit=lines.append, git=self.git)
        return counts, lines

    def of(self, judgements: list[Judgement], row_id: uuid.UUID) -> Judgement:
        return next(j for j in judgements if j.delivery_row_id == row_id)


@pytest.fixture
async def world(
    platform: Platform,
    api_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    common_env: dict[str, Any],
    tmp_path: Path,
) -> World:
    repo = await _repo(sessions, tmp_path, "github")
    git(repo.path, "branch", "feature/x")
    ran = await post_github(api_client, repo, github_push(repo))
    ignored = await post_github(api_client, repo, github_push(repo, ref="refs/heads/feature/x"))
    assert ran.status_code == ignored.status_code == 202
    assert (await _processed(sessions, ran.json()["id"])).run_id is not None
    assert (await _processed(sessions, ignored.json()["id"])).outcome == "ignored"
    lost = await _stored_without_its_event(sessions, repo, github_push(repo))
    settings = OrchestratorSettings(**common_env, git_cache_dir=str(tmp_path / "replay-git"))
    return World(repo, uuid.UUID(ran.json()["id"]), uuid.UUID(ignored.json()["id"]), lost, settings)


@pytest.mark.timeout(120)
async def test_a_dry_run_says_what_each_delivery_would_do_and_changes_nothing(
    world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    counts, lines = await world.replay(dry_run=True)

    assert (counts.scanned, counts.replayed, counts.skipped, counts.runs) == (3, 1, 2, 1)
    ran_row = await delivery_row(sessions, str(world.ran))
    assert world.of(lines, world.ran).detail == (
        f"skipped: already produced run {ran_row.run_id} (--force starts a new one)"
    )
    assert world.of(lines, world.ignored).detail == (
        "skipped: on: does not match (branch 'feature/x' matches none of on.push.branches)"
    )
    assert world.of(lines, world.lost).detail == (
        f"would start a run for refs/heads/main at {world.repo.sha[:12]} because push to branch 'main' "
        "matches on.push"
    )
    assert await _replay_events(sessions, world.repo.project_id) == 0
    assert (await delivery_row(sessions, str(world.lost))).run_id is None


@pytest.mark.timeout(120)
async def test_the_default_replay_gives_a_lost_delivery_its_run_once_and_a_second_replay_changes_nothing(
    world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    counts, _ = await world.replay()

    assert (counts.scanned, counts.replayed, counts.skipped) == (3, 1, 2)
    [run] = await _wait_for_replay_runs(sessions, world.lost, 1)
    assert run.trigger["kind"] == "replay"
    assert run.trigger["delivery"] == str(world.lost)
    assert run.trigger["event"] == "push"
    assert run.sha == world.repo.sha
    assert (await delivery_row(sessions, str(world.lost))).run_id == run.id

    again, lines = await world.replay()

    assert (again.scanned, again.replayed, again.skipped) == (3, 0, 3)
    assert world.of(lines, world.lost).skip == "already produced its run"
    assert len(await _wait_for_replay_runs(sessions, world.lost, 1)) == 1
    assert await _replay_runs(sessions, world.ran) == []


@pytest.mark.timeout(120)
async def test_force_starts_exactly_one_new_run_per_matching_delivery_with_the_replay_trigger(
    world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    counts, lines = await world.replay(force=True)

    assert (counts.scanned, counts.replayed, counts.skipped) == (3, 2, 1)
    assert world.of(lines, world.ignored).skip == "on: does not match"
    [ran_again] = await _wait_for_replay_runs(sessions, world.ran, 1)
    [lost_run] = await _wait_for_replay_runs(sessions, world.lost, 1)
    assert ran_again.trigger["replay_id"] == lost_run.trigger["replay_id"]
    async with sessions() as session:
        entry = (
            await session.scalars(
                select(AuditEntry).where(
                    AuditEntry.action == "webhook.replayed",
                    AuditEntry.target_id == ran_again.trigger["replay_id"],
                )
            )
        ).one()
    assert entry.details["forced"] is True
    assert (entry.details["scanned"], entry.details["replayed"], entry.details["skipped"]) == (3, 2, 1)
    assert (await delivery_row(sessions, str(world.ran))).redeliveries == 1


@pytest.mark.timeout(60)
async def test_an_unknown_project_and_an_empty_window_are_refused_in_one_line(
    world: World, common_env: dict[str, Any]
) -> None:
    with pytest.raises(ReplayWebhooksError, match="no project named 'no-such-project'"):
        await replay(world.settings, Options(since="1h", project="no-such-project"), emit=lambda _j: None)
    with pytest.raises(
        ReplayWebhooksError, match=r"nothing to replay: no stored deliveries received from .* of project"
    ):
        await replay(
            world.settings,
            Options(since="2h", until="1h", project=str(world.repo.project_id)),
            emit=lambda _j: None,
        )


@pytest.mark.timeout(60)
async def test_the_command_exits_non_zero_with_one_line_for_an_unknown_provider_and_project(
    common_env: dict[str, Any],
) -> None:
    env = {**os.environ, **{f"COMET_{k.upper()}": str(v) for k, v in common_env.items()}}
    for args, expected in (
        (["--provider", "gitea"], "comet: unknown provider 'gitea': use one of github, gitlab, bitbucket\n"),
        (
            ["--project", "no-such-project"],
            "comet: no project named 'no-such-project' (give its name or id)\n",
        ),
    ):
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "cli.main", "replay", "webhooks", "--since", "1h", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=60,
        )
        assert done.returncode == 1, done.stderr
        assert done.stderr == expected


# -- the REST face -------------------------------------------------------------------------------


async def _member_headers(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], project_id: uuid.UUID, role: str
) -> dict[str, str]:
    email, password = f"{role}-{secrets.token_hex(4)}@example.com", f"long password {secrets.token_hex(4)}"
    async with sessions.begin() as session:
        user = await users.create_user(session, email=email, password_hash=hash_password(password))
        session.add(Membership(project_id=project_id, user_id=user.id, role=role))
    login = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def _url(project_id: uuid.UUID | str) -> str:
    return f"/api/v1/projects/{project_id}/webhooks/replay"


@pytest.mark.timeout(120)
async def test_a_maintainer_gets_the_dry_run_plan_and_then_the_replay(
    world: World, api_client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    headers = await _member_headers(api_client, sessions, world.repo.project_id, "maintainer")

    dry = await api_client.post(
        _url(world.repo.project_id), json={"since": "1h", "dry_run": True}, headers=headers
    )

    assert dry.status_code == 202, dry.text
    body = dry.json()
    assert (body["scanned"], body["replayed"], body["skipped"], body["runs"]) == (3, 1, 2, 1)
    assert body["replay_id"] is None
    assert body["skipped_by"] == {"already produced its run": 1, "on: does not match": 1}
    plan = {p["id"]: p for p in body["plan"]}
    assert plan[str(world.lost)]["action"] == "replay"
    assert plan[str(world.lost)]["runs"] == [
        {"ref": "refs/heads/main", "sha": world.repo.sha, "because": "push to branch 'main' matches on.push"}
    ]
    assert plan[str(world.ignored)]["detail"].startswith("skipped: on: does not match (")

    done = await api_client.post(_url(world.repo.project_id), json={"since": "1h"}, headers=headers)

    assert done.status_code == 202, done.text
    assert (done.json()["replayed"], done.json()["plan"]) == (1, [])
    [run] = await _wait_for_replay_runs(sessions, world.lost, 1)
    assert run.trigger["replay_id"] == done.json()["replay_id"]
    async with sessions() as session:
        entry = (
            await session.scalars(select(AuditEntry).where(AuditEntry.target_id == done.json()["replay_id"]))
        ).one()
    assert (entry.action, entry.details["via"], entry.project_id) == (
        "webhook.replayed",
        "api",
        world.repo.project_id,
    )


@pytest.mark.timeout(120)
async def test_the_api_refuses_strangers_developers_unknown_projects_and_bad_windows(
    world: World, api_client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    url = _url(world.repo.project_id)
    developer = await _member_headers(api_client, sessions, world.repo.project_id, "developer")
    maintainer = await _member_headers(api_client, sessions, world.repo.project_id, "maintainer")

    anonymous = await api_client.post(url, json={"since": "1h", "dry_run": True})
    forbidden = await api_client.post(url, json={"since": "1h", "dry_run": True}, headers=developer)
    unknown = await api_client.post(_url(uuid.uuid4()), json={"since": "1h"}, headers=maintainer)
    backwards = await api_client.post(url, json={"since": "1h", "until": "2h"}, headers=maintainer)
    garbled = await api_client.post(url, json={"since": "yesterday"}, headers=maintainer)
    provider = await api_client.post(url, json={"since": "1h", "provider": "gitea"}, headers=maintainer)
    ages = await api_client.post(url, json={"since": "99999999999d"}, headers=maintainer)

    assert anonymous.status_code == 401
    assert forbidden.status_code == 403
    assert "maintainer" in forbidden.json()["detail"]
    assert unknown.status_code == 404
    for answer in (backwards, garbled, provider, ages):
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
    assert backwards.json()["detail"] == "The replay window is empty: `until` must be after `since`."
    assert [e["field"] for e in garbled.json()["errors"]] == ["body.since"]
    assert await _replay_events(sessions, world.repo.project_id) == 0
