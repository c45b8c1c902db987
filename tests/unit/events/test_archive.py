"""Archive files: whole or refused, never half-read; the same events give the same bytes."""

from __future__ import annotations

import gzip
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from events.archive import (
    ArchivedEvent,
    ArchiveError,
    archive_files,
    archive_name,
    read_archive,
    remove_temporaries,
    write_archive,
)


def _events(n: int, first: int = 1) -> list[ArchivedEvent]:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        ArchivedEvent(
            id=first + i,
            event_id=uuid.uuid4(),
            event_type="run.cancel_requested",
            topic="comet.run-commands",
            key="k",
            run_id=uuid.uuid4(),
            created_at=at,
            published_at=None if i % 2 else at,
            envelope={"type": "run.cancel_requested", "payload": {"n": i}},
        )
        for i in range(n)
    ]


def test_an_archive_reads_back_every_event_it_was_written_with(tmp_path: Path) -> None:
    events = _events(50, first=7)
    written = write_archive(tmp_path, events)
    assert written.path.name == archive_name(7, 56)
    assert (written.events, written.first_id, written.last_id) == (50, 7, 56)
    assert list(read_archive(written.path)) == events
    assert archive_files(tmp_path) == [written.path]


def test_writing_the_same_events_twice_gives_the_same_file(tmp_path: Path) -> None:
    events = _events(3)
    first = write_archive(tmp_path, events)
    second = write_archive(tmp_path, events)
    assert first.sha256 == second.sha256
    assert archive_files(tmp_path) == [first.path]


def test_a_truncated_archive_is_refused_whole(tmp_path: Path) -> None:
    path = write_archive(tmp_path, _events(500)).path
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match="truncated or corrupt"):
        list(read_archive(path))


def test_an_archive_with_a_line_that_is_not_an_event_is_refused(tmp_path: Path) -> None:
    path = tmp_path / archive_name(1, 1)
    path.write_bytes(gzip.compress(b'{"id": 1}\n'))
    with pytest.raises(ArchiveError, match="not an archived event"):
        list(read_archive(path))


def test_temporary_files_are_neither_archives_nor_kept(tmp_path: Path) -> None:
    temp = tmp_path / f".{archive_name(1, 2)}.tmp"
    temp.write_bytes(b"half written")
    assert archive_files(tmp_path) == []
    remove_temporaries(tmp_path)
    assert not temp.exists()
