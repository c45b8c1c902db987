"""Retention: finished runs' event history older than the retention moves to archive files and out
of Postgres, crash-safe (a file left by an interrupted pass is recorded, never duplicated), and
the history reader reads archives and Postgres as one history."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.settings import OrchestratorSettings
from db.engine import make_engine, make_sessionmaker
from db.models import EventArchive, OutboxEvent, Project, Run
from db.repositories.archives import ARCHIVER_LOCK
from events import history
from events.archive import archive_files, read_archive, write_archive
from events.envelope import new_envelope
from events.outbox import PendingEvent, add_events
from events.retention import _archived, archive_expired
from events.topics import Topics
from schemas.events import RunCancelRequested
from schemas.ids import uuid7

pytestmark = pytest.mark.integration

TOPICS = Topics("retention")
LONG_AGO = datetime.now(UTC) - timedelta(days=40)


@pytest.fixture
async def own_sessions(own_database: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(OrchestratorSettings(database_url=own_database))
    yield make_sessionmaker(engine)
    await engine.dispose()


async def _run_with_events(
    sessions: async_sessionmaker[AsyncSession], *, finished_at: datetime | None, events: int, at: datetime
) -> uuid.UUID:
    """A run (finished at `finished_at`, or still running) with `events` published history rows."""
    run_id = uuid7()
    async with sessions.begin() as session:
        project_id = await session.scalar(select(Project.id).limit(1))
        if project_id is None:
            project = Project(name=f"p{uuid.uuid4().hex[:8]}", repo_url="file:///x", provider="github")
            session.add(project)
            await session.flush()
            project_id = project.id
        session.add(
            Run(
                id=run_id,
                project_id=project_id,
                number=int(await session.scalar(select(func.count()).select_from(Run)) or 0) + 1,
                status="succeeded" if finished_at else "running",
                ref="refs/heads/main",
                trigger={"kind": "api"},
                finished_at=finished_at,
            )
        )
        await session.flush()
        await add_events(
            session,
            [
                PendingEvent(
                    TOPICS.run_commands,
                    new_envelope(
                        RunCancelRequested(run_id=run_id, source="user", reason=f"e{i}"), key=str(run_id)
                    ),
                    history_only=True,  # written as published
                )
                for i in range(events)
            ],
        )
        await session.execute(
            update(OutboxEvent).where(OutboxEvent.run_id == run_id).values(created_at=at, published_at=at)
        )
    return run_id


async def _outbox_count(sessions: async_sessionmaker[AsyncSession], run_id: uuid.UUID) -> int:
    async with sessions() as session:
        return int(
            await session.scalar(
                select(func.count()).select_from(OutboxEvent).where(OutboxEvent.run_id == run_id)
            )
            or 0
        )


async def test_a_finished_runs_old_history_moves_to_an_archive_and_is_still_read_as_history(
    own_sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    old = await _run_with_events(own_sessions, finished_at=LONG_AGO, events=5, at=LONG_AGO)
    running = await _run_with_events(own_sessions, finished_at=None, events=3, at=LONG_AGO)
    recent = await _run_with_events(own_sessions, finished_at=datetime.now(UTC), events=2, at=LONG_AGO)
    async with own_sessions() as session:
        before = [e.envelope for e in await history.run_history(session, old)]

    done = await archive_expired(own_sessions, tmp_path, retention_s=30 * 86400, batch=3)

    assert (done.files, done.events) == (2, 5)
    assert await _outbox_count(own_sessions, old) == 0
    assert await _outbox_count(own_sessions, running) == 3  # a run still going keeps its history
    assert await _outbox_count(own_sessions, recent) == 2  # finished within the retention
    files = archive_files(tmp_path)
    assert [e.run_id for f in files for e in read_archive(f)] == [old] * 5
    async with own_sessions() as session:
        ledger = (await session.execute(select(EventArchive))).scalars().all()
        assert sorted(a.file_name for a in ledger) == [f.name for f in files]
        assert [e.envelope for e in await history.run_history(session, old, archive_dir=tmp_path)] == before
        assert await history.run_history(session, old) == []
    window = history.Window(TOPICS.run_commands, since=LONG_AGO - timedelta(seconds=1))
    seen = [
        e.run_id
        async for batch in history.events_in(own_sessions, window, archive_dir=tmp_path)
        for e in batch
    ]
    assert sorted(map(str, seen)) == sorted(map(str, [old] * 5 + [running] * 3 + [recent] * 2))
    assert await history.count(own_sessions, window, archive_dir=tmp_path) == 10

    again = await archive_expired(own_sessions, tmp_path, retention_s=30 * 86400, batch=3)
    assert (again.files, again.events, again.recovered) == (0, 0, 0)


async def test_an_archive_written_before_a_crash_is_recorded_once_and_its_rows_deleted(
    own_sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    old = await _run_with_events(own_sessions, finished_at=LONG_AGO, events=4, at=LONG_AGO)
    async with own_sessions() as session:
        rows = (await session.execute(select(OutboxEvent).order_by(OutboxEvent.id))).scalars().all()
    # The crash: the file was written and renamed, the transaction recording it never committed.
    await asyncio.to_thread(write_archive, tmp_path, [_archived(r) for r in rows])
    (tmp_path / ".history-00000000000000000001-00000000000000000002.jsonl.gz.tmp").write_bytes(b"half")
    window = history.Window(TOPICS.run_commands, since=LONG_AGO - timedelta(seconds=1))
    both = [
        e.seq async for batch in history.events_in(own_sessions, window, archive_dir=tmp_path) for e in batch
    ]
    assert both == [r.id for r in rows]  # in the file and the outbox: read once

    done = await archive_expired(own_sessions, tmp_path, retention_s=30 * 86400)

    assert (done.recovered, done.files, done.events) == (1, 0, 0)
    assert await _outbox_count(own_sessions, old) == 0
    assert len(archive_files(tmp_path)) == 1
    assert not list(tmp_path.glob("*.tmp"))
    async with own_sessions() as session:
        assert await session.scalar(select(func.count()).select_from(EventArchive)) == 1
        events = await history.run_history(session, old, archive_dir=tmp_path)
    assert [e.seq for e in events] == [r.id for r in rows]


async def test_only_one_archiver_works_at_a_time(
    own_sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    await _run_with_events(own_sessions, finished_at=LONG_AGO, events=2, at=LONG_AGO)
    async with own_sessions.begin() as holder:
        await holder.execute(select(func.pg_advisory_xact_lock(ARCHIVER_LOCK)))
        blocked = await archive_expired(own_sessions, tmp_path, retention_s=30 * 86400)
    assert blocked.skipped_locked
    assert blocked.events == 0
    assert (await archive_expired(own_sessions, tmp_path, retention_s=30 * 86400)).events == 2
