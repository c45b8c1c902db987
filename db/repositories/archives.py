"""The SQL of retention: which outbox rows have outlived the retention, and moving them into the
archive ledger (`event_archives`) in the transaction that deletes them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, delete, exists, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import EventArchive, OutboxEvent, Run

# Any constant unique to this use: only one archiver at a time across every orchestrator.
ARCHIVER_LOCK = 0x636F6D65_7401  # "come" + t01


async def try_archiver_lock(session: AsyncSession) -> bool:
    """Take the archiver's lock for the session's transaction; False when another archiver has it."""
    return bool((await session.execute(select(func.pg_try_advisory_xact_lock(ARCHIVER_LOCK)))).scalar_one())


async def expired_history(session: AsyncSession, cutoff: datetime, *, limit: int) -> Sequence[OutboxEvent]:
    """Published outbox rows older than `cutoff` whose run (if any) finished before `cutoff`.

    A run still going, or finished after the cutoff, keeps its whole history in Postgres; an event
    that names no run (or a run that no longer exists) goes by its own age. Oldest first."""
    live_run = exists().where(
        and_(Run.id == OutboxEvent.run_id, or_(Run.finished_at.is_(None), Run.finished_at >= cutoff))
    )
    rows = await session.execute(
        select(OutboxEvent)
        .where(OutboxEvent.published_at.is_not(None), OutboxEvent.created_at < cutoff, ~live_run)
        .order_by(OutboxEvent.id)
        .limit(limit)
    )
    return rows.scalars().all()


async def recorded_files(session: AsyncSession) -> set[str]:
    return set((await session.execute(select(EventArchive.file_name))).scalars())


async def record_archive(
    session: AsyncSession,
    *,
    file_name: str,
    first_id: int,
    last_id: int,
    events: int,
    size: int,
    sha256: str,
    oldest_at: datetime,
    newest_at: datetime,
    outbox_ids: Sequence[int],
) -> int:
    """Record an archive in the ledger and delete its rows from the outbox; returns rows deleted.

    Idempotent on `file_name`: an archive recorded already is not recorded twice."""
    already = (
        await session.execute(select(EventArchive.id).where(EventArchive.file_name == file_name))
    ).scalar_one_or_none()
    if already is None:
        await session.execute(
            insert(EventArchive).values(
                file_name=file_name,
                first_outbox_id=first_id,
                last_outbox_id=last_id,
                events=events,
                bytes=size,
                sha256=sha256,
                oldest_at=oldest_at,
                newest_at=newest_at,
            )
        )
    result = await session.execute(delete(OutboxEvent).where(OutboxEvent.id.in_(list(outbox_ids))))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
