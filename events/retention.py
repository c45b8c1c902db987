"""Retention of the event history: finished runs' events older than `COMET_HISTORY_RETENTION`
move from the outbox table to archive files in `COMET_ARCHIVE_DIR` (docs/decisions/0020).

Crash-safe by order: the file is written whole (temp, fsync, rename, fsync dir) before the
transaction that records it in `event_archives` and deletes its rows commits. A crash in between
leaves the file *and* the rows, never neither; the next pass finds the file missing from the
ledger and finishes the job (records it, deletes the rows it holds), so nothing is archived twice.
One archiver at a time, across every orchestrator, by a transaction-level advisory lock.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import OutboxEvent
from db.repositories import archives as repo
from events.archive import (
    ArchivedEvent,
    WrittenArchive,
    archive_files,
    file_digest,
    read_archive,
    remove_temporaries,
    write_archive,
)

log = structlog.get_logger(__name__)

BATCH = 10_000


@dataclass
class ArchivePass:
    files: int = 0
    events: int = 0
    recovered: int = 0  # files left by an interrupted pass, recorded now
    skipped_locked: bool = False


def _archived(row: OutboxEvent) -> ArchivedEvent:
    return ArchivedEvent(
        id=row.id,
        event_id=row.event_id,
        event_type=row.event_type,
        topic=row.topic,
        key=row.key,
        run_id=row.run_id,
        created_at=row.created_at,
        published_at=row.published_at,
        envelope=row.envelope,
    )


async def _record(session: AsyncSession, written: WrittenArchive, ids: list[int]) -> int:
    return await repo.record_archive(
        session,
        file_name=written.path.name,
        first_id=written.first_id,
        last_id=written.last_id,
        events=written.events,
        size=written.bytes,
        sha256=written.sha256,
        oldest_at=written.oldest_at,
        newest_at=written.newest_at,
        outbox_ids=ids,
    )


def _read_whole(path: Path) -> list[ArchivedEvent]:
    return list(read_archive(path))


async def _recover(session: AsyncSession, directory: Path) -> int:
    """Record archives a crashed pass wrote but did not record (their rows are still there)."""
    recorded = await repo.recorded_files(session)
    recovered = 0
    for path in await asyncio.to_thread(archive_files, directory):
        if path.name in recorded:
            continue
        events = await asyncio.to_thread(_read_whole, path)
        digest, size = await asyncio.to_thread(file_digest, path)
        written = WrittenArchive(
            path=path,
            first_id=events[0].id,
            last_id=events[-1].id,
            events=len(events),
            bytes=size,
            sha256=digest,
            oldest_at=min(e.created_at for e in events),
            newest_at=max(e.created_at for e in events),
        )
        await _record(session, written, [e.id for e in events])
        log.info("recorded an archive an interrupted pass left", file=path.name, events=len(events))
        recovered += 1
    await asyncio.to_thread(remove_temporaries, directory)
    return recovered


async def archive_expired(
    sessions: async_sessionmaker[AsyncSession],
    directory: Path,
    *,
    retention_s: float,
    now: datetime | None = None,
    batch: int = BATCH,
) -> ArchivePass:
    """Archive every expired event, `batch` rows per file; returns what was done."""
    cutoff = (now or datetime.now(UTC)) - timedelta(seconds=retention_s)
    result = ArchivePass()
    while True:
        async with sessions.begin() as session:
            if not await repo.try_archiver_lock(session):
                result.skipped_locked = True
                return result
            if result.files == 0:
                result.recovered += await _recover(session, directory)
            rows = await repo.expired_history(session, cutoff, limit=batch)
            if not rows:
                return result
            events = [_archived(r) for r in rows]
            written = await asyncio.to_thread(write_archive, directory, events)
            await _record(session, written, [e.id for e in events])
        result.files += 1
        result.events += len(events)
        log.info("event history archived", file=written.path.name, events=len(events))
        if len(rows) < batch:
            return result


class HistoryArchiver:
    """Runs `archive_expired` every `interval_s` inside the orchestrator."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        directory: Path,
        *,
        retention_s: float,
        interval_s: float,
    ) -> None:
        self._sessions = sessions
        self._directory = directory
        self._retention = retention_s
        self._interval = interval_s
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await archive_expired(self._sessions, self._directory, retention_s=self._retention)
            except Exception as exc:
                log.warning("archiving the event history failed; retrying later", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)

    def stop(self) -> None:
        self._stopping.set()
