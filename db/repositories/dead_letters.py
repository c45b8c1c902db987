"""Dead letters as operators read and handle them (the API's `/dead-letters`, `comet dlq`, and the
figures in `/metrics`). A letter is *waiting* until it is redriven (re-published to its topic) or
discarded (kept with who and when, no longer waiting); nothing here erases one."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import DeadLetter


class LetterState(StrEnum):
    WAITING = "waiting"
    REDRIVEN = "redriven"
    DISCARDED = "discarded"


class LetterKind(StrEnum):
    UNDECODABLE = "undecodable"
    HANDLER_FAILED = "handler_failed"


def state_of(letter: DeadLetter) -> LetterState:
    if letter.discarded_at is not None:
        return LetterState.DISCARDED
    if letter.redriven_at is not None:
        return LetterState.REDRIVEN
    return LetterState.WAITING


def _in_state(state: LetterState) -> ColumnElement[bool]:
    match state:
        case LetterState.WAITING:
            return DeadLetter.redriven_at.is_(None) & DeadLetter.discarded_at.is_(None)
        case LetterState.REDRIVEN:
            return DeadLetter.redriven_at.is_not(None) & DeadLetter.discarded_at.is_(None)
        case LetterState.DISCARDED:
            return DeadLetter.discarded_at.is_not(None)


@dataclass(frozen=True, slots=True)
class Waiting:
    count: int
    oldest_at: datetime


async def waiting_stats(session: AsyncSession) -> dict[tuple[str, str], Waiting]:
    """Dead letters still waiting, by (consumer, kind): how many, and when the oldest arrived."""
    rows = await session.execute(
        select(DeadLetter.consumer, DeadLetter.kind, func.count(), func.min(DeadLetter.created_at))
        .where(_in_state(LetterState.WAITING))
        .group_by(DeadLetter.consumer, DeadLetter.kind)
    )
    return {(row[0], row[1]): Waiting(row[2], row[3]) for row in rows}


async def waiting_counts(session: AsyncSession) -> dict[tuple[str, str], int]:
    """Dead letters still waiting, by (consumer, kind)."""
    return {key: w.count for key, w in (await waiting_stats(session)).items()}


async def list_letters(
    session: AsyncSession,
    *,
    limit: int,
    before: uuid.UUID | None = None,
    consumer: str | None = None,
    topic: str | None = None,
    kind: LetterKind | None = None,
    state: LetterState | None = None,
) -> Sequence[DeadLetter]:
    """Letters newest first (ids are time-ordered UUIDv7), starting below `before`."""
    stmt = select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit)
    if before is not None:
        stmt = stmt.where(DeadLetter.id < before)
    if consumer is not None:
        stmt = stmt.where(DeadLetter.consumer == consumer)
    if topic is not None:
        stmt = stmt.where(DeadLetter.topic == topic)
    if kind is not None:
        stmt = stmt.where(DeadLetter.kind == kind.value)
    if state is not None:
        stmt = stmt.where(_in_state(state))
    return (await session.scalars(stmt)).all()


async def get(session: AsyncSession, letter_id: uuid.UUID, *, for_update: bool = False) -> DeadLetter | None:
    """One letter; `for_update` locks its row until the transaction ends (redrive and discard do,
    so two operators cannot both redrive it)."""
    stmt = select(DeadLetter).where(DeadLetter.id == letter_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.scalars(stmt)).one_or_none()


async def waiting_ids(session: AsyncSession, *, consumer: str | None = None) -> list[uuid.UUID]:
    """Every waiting letter's id, oldest first (the order `redrive --all` goes in)."""
    stmt = select(DeadLetter.id).where(_in_state(LetterState.WAITING)).order_by(DeadLetter.id)
    if consumer is not None:
        stmt = stmt.where(DeadLetter.consumer == consumer)
    return list((await session.scalars(stmt)).all())


def mark_redriven(letter: DeadLetter, *, by: str, at: datetime) -> None:
    letter.redriven_at = at
    letter.redriven_by = by[:255]
    letter.redrive_count = (letter.redrive_count or 0) + 1


def mark_discarded(letter: DeadLetter, *, by: str, at: datetime) -> None:
    letter.discarded_at = at
    letter.discarded_by = by[:255]
