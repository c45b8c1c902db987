"""Shared steps of integration tests: projects, runs and waiting for them, through the real tables."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.auth.passwords import hash_password
from db.models import LogChunk, Membership, Project, Run, Stage, StageAttempt
from db.repositories import users
from db.repositories.runs import create_run
from events.envelope import new_envelope
from events.outbox import PendingEvent, add_events
from events.topics import Topics
from schemas.events import RunCancelRequested, RunRetryRequested
from schemas.states import RUN_TERMINAL, RunStatus


async def add_project(
    sessions: async_sessionmaker[AsyncSession], repo_url: str, name: str | None = None
) -> uuid.UUID:
    async with sessions.begin() as session:
        project = Project(
            name=name or f"p-{uuid.uuid4().hex[:8]}",
            repo_url=repo_url,
            provider="local",
            default_branch="main",
        )
        session.add(project)
        await session.flush()
        return project.id


async def start_run(
    sessions: async_sessionmaker[AsyncSession],
    topics: Topics,
    project_id: uuid.UUID,
    *,
    ref: str = "refs/heads/main",
    sha: str | None = None,
    variables: dict[str, str] | None = None,
) -> uuid.UUID:
    async with sessions.begin() as session:
        run = await create_run(
            session,
            topics,
            project_id=project_id,
            ref=ref,
            sha=sha,
            trigger={"kind": "api", "event": "manual"},
            variables=variables or {},
        )
        return run.id


async def wait_for_run(
    sessions: async_sessionmaker[AsyncSession],
    run_id: uuid.UUID,
    *,
    until: frozenset[RunStatus] = RUN_TERMINAL,
    timeout_s: float = 60.0,
) -> Run:
    deadline = time.monotonic() + timeout_s
    while True:
        async with sessions() as session:
            run = await session.get(Run, run_id)
            assert run is not None
            if RunStatus(run.status) in until:
                return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {run.status} after {timeout_s} s")
        await asyncio.sleep(0.05)


async def stages_of(sessions: async_sessionmaker[AsyncSession], run_id: uuid.UUID) -> dict[str, Stage]:
    async with sessions() as session:
        rows = (await session.scalars(select(Stage).where(Stage.run_id == run_id))).all()
        return {s.name: s for s in rows}


async def attempts_of(sessions: async_sessionmaker[AsyncSession], run_id: uuid.UUID) -> list[StageAttempt]:
    async with sessions() as session:
        rows = await session.scalars(
            select(StageAttempt).where(StageAttempt.run_id == run_id).order_by(StageAttempt.queued_at)
        )
        return list(rows.all())


async def log_of(sessions: async_sessionmaker[AsyncSession], attempt_id: uuid.UUID) -> str:
    async with sessions() as session:
        rows = await session.scalars(
            select(LogChunk).where(LogChunk.attempt_id == attempt_id).order_by(LogChunk.seq)
        )
        return "".join(c.data for c in rows.all())


def summary(stages: dict[str, Stage]) -> dict[str, Any]:
    return {name: s.status for name, s in stages.items()}


async def request_cancel(
    sessions: async_sessionmaker[AsyncSession], topics: Topics, run_id: uuid.UUID, reason: str = "stop"
) -> None:
    """What `POST /runs/{id}/cancel` records: a cancel request in the outbox."""
    async with sessions.begin() as session:
        envelope = new_envelope(
            RunCancelRequested(run_id=run_id, source="user", reason=reason), key=str(run_id)
        )
        await add_events(session, [PendingEvent(topics.run_commands, envelope)])


async def request_retry(
    sessions: async_sessionmaker[AsyncSession], topics: Topics, run_id: uuid.UUID
) -> None:
    async with sessions.begin() as session:
        envelope = new_envelope(RunRetryRequested(run_id=run_id), key=str(run_id))
        await add_events(session, [PendingEvent(topics.run_commands, envelope)])


async def owner_headers(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], project_id: uuid.UUID
) -> dict[str, str]:
    """Log in as a new owner of the project; the Authorization header to send."""
    email, password = f"owner-{secrets.token_hex(4)}@example.com", f"long password {secrets.token_hex(4)}"
    async with sessions.begin() as session:
        user = await users.create_user(session, email=email, password_hash=hash_password(password))
        session.add(Membership(project_id=project_id, user_id=user.id, role="owner"))
    login = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    return {"Authorization": f"Bearer {login.json()['access_token']}"}
