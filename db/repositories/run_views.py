"""Read models of runs for the API: one run with its stages and attempt history, a project's runs
newest first, a stage attempt's log chunks, and a run's events from the outbox (its history).

Read-only; access checks are the caller's (see `api/access.py`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import DeadLetter, LogChunk, OutboxEvent, Run, Stage, StageAttempt


async def get_run(session: AsyncSession, run_id: uuid.UUID) -> Run | None:
    return await session.get(Run, run_id)


@dataclass(frozen=True, slots=True)
class StageView:
    stage: Stage
    attempts: list[StageAttempt]

    @property
    def current(self) -> StageAttempt | None:
        for attempt in self.attempts:
            if attempt.number == self.stage.attempt:
                return attempt
        return None


async def stages_of(session: AsyncSession, run_id: uuid.UUID) -> list[StageView]:
    """The run's stages by position, each with its attempts by number."""
    stages = (
        await session.scalars(
            select(Stage).where(Stage.run_id == run_id).order_by(Stage.position, Stage.name)
        )
    ).all()
    attempts = (
        await session.scalars(
            select(StageAttempt)
            .where(StageAttempt.run_id == run_id)
            .order_by(StageAttempt.stage_id, StageAttempt.number)
        )
    ).all()
    by_stage: dict[uuid.UUID, list[StageAttempt]] = {}
    for attempt in attempts:
        by_stage.setdefault(attempt.stage_id, []).append(attempt)
    return [StageView(stage, by_stage.get(stage.id, [])) for stage in stages]


async def dead_letters_of(session: AsyncSession, run_id: uuid.UUID) -> Sequence[DeadLetter]:
    """The run's events that a consumer set aside as poison, oldest first."""
    stmt = select(DeadLetter).where(DeadLetter.run_id == run_id).order_by(DeadLetter.created_at)
    return (await session.scalars(stmt)).all()


async def list_runs(
    session: AsyncSession,
    project_id: uuid.UUID,
    *,
    limit: int,
    before: uuid.UUID | None = None,
    status: str | None = None,
    ref: str | None = None,
) -> Sequence[Run]:
    """The project's runs newest first (ids are UUIDv7: id order is creation order), at most
    `limit`, older than the run `before` when given."""
    stmt = select(Run).where(Run.project_id == project_id)
    if before is not None:
        stmt = stmt.where(Run.id < before)
    if status is not None:
        stmt = stmt.where(Run.status == status)
    if ref is not None:
        stmt = stmt.where(Run.ref == ref)
    return (await session.scalars(stmt.order_by(Run.id.desc()).limit(limit))).all()


# -- logs --------------------------------------------------------------------------------------
async def get_stage(session: AsyncSession, run_id: uuid.UUID, name: str) -> Stage | None:
    stmt = select(Stage).where(Stage.run_id == run_id, Stage.name == name)
    return (await session.scalars(stmt)).one_or_none()


async def get_attempt(
    session: AsyncSession, stage_id: uuid.UUID, number: int | None = None
) -> StageAttempt | None:
    """Attempt `number` of the stage, or its latest attempt when `number` is None."""
    stmt = select(StageAttempt).where(StageAttempt.stage_id == stage_id)
    if number is not None:
        stmt = stmt.where(StageAttempt.number == number)
    else:
        stmt = stmt.order_by(StageAttempt.number.desc()).limit(1)
    # Attempts change under us while a log is followed: always read the row fresh.
    stmt = stmt.execution_options(populate_existing=True)
    return (await session.scalars(stmt)).first()


@dataclass(frozen=True, slots=True)
class Chunk:
    seq: int
    data: str


async def log_chunks(
    session: AsyncSession, attempt_id: uuid.UUID, *, after_seq: int = -1, limit: int = 500
) -> list[Chunk]:
    """The attempt's log chunks with `seq > after_seq`, in order, at most `limit`."""
    rows = await session.execute(
        select(LogChunk.seq, LogChunk.data)
        .where(LogChunk.attempt_id == attempt_id, LogChunk.seq > after_seq)
        .order_by(LogChunk.seq)
        .limit(limit)
    )
    return [Chunk(seq, data) for seq, data in rows]


# -- events ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RunEvent:
    seq: int
    topic: str
    envelope: dict[str, Any]
    published_at: datetime | None


async def run_events(
    session: AsyncSession, run_id: uuid.UUID, *, after_seq: int = 0, limit: int = 500
) -> list[RunEvent]:
    """The run's events as written to the outbox, in the order they happened."""
    rows = await session.execute(
        select(OutboxEvent.id, OutboxEvent.topic, OutboxEvent.envelope, OutboxEvent.published_at)
        .where(OutboxEvent.run_id == run_id, OutboxEvent.id > after_seq)
        .order_by(OutboxEvent.id)
        .limit(limit)
    )
    return [RunEvent(seq, topic, envelope, published_at) for seq, topic, envelope, published_at in rows]


async def stage_status(session: AsyncSession, stage_id: uuid.UUID) -> str | None:
    """The stage's status read fresh (None when the stage no longer exists)."""
    status: str | None = await session.scalar(select(Stage.status).where(Stage.id == stage_id))
    return status
