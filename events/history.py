"""Reading the event history: the one place that does.

Every event Comet emits is a row of the outbox, kept after it was published: that is the history
(`GET /runs/{id}/events`, `comet replay events`, `comet replay run` and rebuilds read it). This
module turns it into `HistoryEvent`s, in the order they were written (the outbox id), in batches,
so a window of millions of events streams in constant memory.

Archived history (retention moves finished runs' events to files in `COMET_ARCHIVE_DIR`,
events/retention.py) is read here too: pass `archive_dir` (the settings' `archive_dir`) and the
archived events of the window are merged in outbox-id order with those still in Postgres, so
callers never need to know where an event is kept. An event both in a file and in the outbox (a
crash between writing an archive and deleting its rows) is yielded once.
"""

from __future__ import annotations

import asyncio
import heapq
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import OutboxEvent
from events.archive import ArchivedEvent, archive_files, read_archive

# Kept in a run's history but never published (events/outbox.py `history_only`): a replay of a
# topic leaves them out, as the live relay did.
HISTORY_ONLY_TYPES = frozenset({"run.note"})


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One event as the history holds it: where it was published and its envelope as written (at
    the schema version of its day; `events.envelope.decode` upcasts it)."""

    seq: int
    topic: str
    key: str
    event_type: str
    envelope: dict[str, Any]
    run_id: uuid.UUID | None
    created_at: datetime

    @property
    def history_only(self) -> bool:
        return self.event_type in HISTORY_ONLY_TYPES


@dataclass(frozen=True, slots=True)
class Window:
    """Events of `topic` written at or after `since` and before `until` (None: up to now)."""

    topic: str
    since: datetime
    until: datetime | None = None


_COLUMNS = (
    OutboxEvent.id,
    OutboxEvent.topic,
    OutboxEvent.key,
    OutboxEvent.event_type,
    OutboxEvent.envelope,
    OutboxEvent.run_id,
    OutboxEvent.created_at,
)


def _in_window(window: Window) -> list[Any]:
    conditions = [OutboxEvent.topic == window.topic, OutboxEvent.created_at >= window.since]
    if window.until is not None:
        conditions.append(OutboxEvent.created_at < window.until)
    return conditions


async def count(
    sessions: async_sessionmaker[AsyncSession], window: Window, *, archive_dir: Path | None = None
) -> int:
    """How many events the window holds (for a progress bar's total)."""
    async with sessions() as session:
        total = await session.scalar(select(func.count()).select_from(OutboxEvent).where(*_in_window(window)))
    archived = 0
    if archive_dir is not None:
        archived = len(await asyncio.to_thread(_archived_in_window, archive_dir, window))
    return int(total or 0) + archived


# -- archives ----------------------------------------------------------------------------------


def _from_archive(e: ArchivedEvent) -> HistoryEvent:
    return HistoryEvent(e.id, e.topic, e.key, e.event_type, e.envelope, e.run_id, e.created_at)


def _archived(directory: Path, keep: Callable[[ArchivedEvent], bool]) -> list[HistoryEvent]:
    """Archived events `keep` accepts, in outbox-id order (ArchiveError if an archive is not whole)."""
    found = [_from_archive(e) for path in archive_files(directory) for e in read_archive(path) if keep(e)]
    found.sort(key=lambda e: e.seq)
    return found


def _archived_in_window(directory: Path, window: Window) -> list[HistoryEvent]:
    return _archived(
        directory,
        lambda e: (
            e.topic == window.topic
            and e.created_at >= window.since
            and (window.until is None or e.created_at < window.until)
        ),
    )


def _merged(archived: list[HistoryEvent], live: list[HistoryEvent]) -> Iterator[HistoryEvent]:
    """Both sorted lists in seq order, each seq once."""
    last = -1
    for event in heapq.merge(archived, live, key=lambda e: e.seq):
        if event.seq != last:
            last = event.seq
            yield event


async def events_in(
    sessions: async_sessionmaker[AsyncSession],
    window: Window,
    *,
    batch_size: int = 1000,
    archive_dir: Path | None = None,
) -> AsyncIterator[list[HistoryEvent]]:
    """The window's events in the order they were written, `batch_size` at a time (keyset paging on
    the outbox id: each batch is a short read of its own, no transaction held open). With
    `archive_dir`, the window's archived events come first (archives hold the oldest history)."""
    after = 0
    if archive_dir is not None:
        archived = await asyncio.to_thread(_archived_in_window, archive_dir, window)
        for start in range(0, len(archived), batch_size):
            yield archived[start : start + batch_size]
        if archived:
            # Rows a crashed archiver left in the outbox too are not yielded twice.
            seen = {e.seq for e in archived}
            async for batch in events_in(sessions, window, batch_size=batch_size):
                fresh = [e for e in batch if e.seq not in seen]
                if fresh:
                    yield fresh
            return
    while True:
        async with sessions() as session:
            rows = (
                await session.execute(
                    select(*_COLUMNS)
                    .where(*_in_window(window), OutboxEvent.id > after)
                    .order_by(OutboxEvent.id)
                    .limit(batch_size)
                )
            ).all()
        if not rows:
            return
        yield [HistoryEvent(*row) for row in rows]
        if len(rows) < batch_size:
            return
        after = rows[-1].id


async def run_history(
    session: AsyncSession, run_id: uuid.UUID, *, archive_dir: Path | None = None
) -> list[HistoryEvent]:
    """Every event of one run (its `run_id`), in the order they were written (archived ones too
    with `archive_dir`)."""
    rows = await session.execute(
        select(*_COLUMNS).where(OutboxEvent.run_id == run_id).order_by(OutboxEvent.id)
    )
    live = [HistoryEvent(*row) for row in rows]
    if archive_dir is None:
        return live
    archived = await asyncio.to_thread(_archived, archive_dir, lambda e: e.run_id == run_id)
    return list(_merged(archived, live))
