"""The event-history archive files: gzip'd JSON lines, one outbox row per line, written crash-safe.

A file is written as `.<name>.tmp`, fsynced, renamed to `<name>` and the directory fsynced, so a
file under its final name is always complete. Its name carries the outbox id range it holds:
`history-<first id>-<last id>.jsonl.gz` (20 digits each, so names sort by id). Reading checks
gzip's CRC and every line's JSON: a truncated or corrupt archive is one `ArchiveError` naming the
file, never a partial read passed off as whole.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import uuid
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

_NAME = re.compile(r"^history-(\d{20})-(\d{20})\.jsonl\.gz$")


class ArchiveError(Exception):
    """An archive that cannot be read whole (truncated, corrupt, not an archive)."""


@dataclass(frozen=True, slots=True)
class ArchivedEvent:
    """One outbox row as kept in an archive."""

    id: int
    event_id: uuid.UUID
    event_type: str
    topic: str
    key: str
    run_id: uuid.UUID | None
    created_at: datetime
    published_at: datetime | None
    envelope: dict[str, Any]

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "id": self.id,
                "event_id": str(self.event_id),
                "event_type": self.event_type,
                "topic": self.topic,
                "key": self.key,
                "run_id": None if self.run_id is None else str(self.run_id),
                "created_at": self.created_at.isoformat(),
                "published_at": None if self.published_at is None else self.published_at.isoformat(),
                "envelope": self.envelope,
            }
        )

    @classmethod
    def from_json(cls, line: bytes) -> ArchivedEvent:
        data = orjson.loads(line)
        return cls(
            id=int(data["id"]),
            event_id=uuid.UUID(data["event_id"]),
            event_type=str(data["event_type"]),
            topic=str(data["topic"]),
            key=str(data["key"]),
            run_id=None if data["run_id"] is None else uuid.UUID(data["run_id"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            published_at=None
            if data["published_at"] is None
            else datetime.fromisoformat(data["published_at"]),
            envelope=dict(data["envelope"]),
        )


@dataclass(frozen=True, slots=True)
class WrittenArchive:
    path: Path
    first_id: int
    last_id: int
    events: int
    bytes: int
    sha256: str
    oldest_at: datetime
    newest_at: datetime


def archive_name(first_id: int, last_id: int) -> str:
    return f"history-{first_id:020d}-{last_id:020d}.jsonl.gz"


def is_archive_name(name: str) -> bool:
    return _NAME.match(name) is not None


def archive_files(directory: Path) -> list[Path]:
    """The complete archives in `directory`, in id order (temporary files are not archives)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if is_archive_name(p.name))


def remove_temporaries(directory: Path) -> None:
    """Delete files a crashed writer never renamed (their rows were never deleted)."""
    if directory.is_dir():
        for temp in directory.glob(".history-*.tmp"):
            temp.unlink(missing_ok=True)


def write_archive(directory: Path, events: Sequence[ArchivedEvent]) -> WrittenArchive:
    """Write `events` (sorted by id, not empty) as one archive: temp file, fsync, rename, fsync dir."""
    if not events:
        raise ValueError("an archive holds at least one event")
    directory.mkdir(parents=True, exist_ok=True)
    name = archive_name(events[0].id, events[-1].id)
    final = directory / name
    temp = directory / f".{name}.tmp"
    with open(temp, "wb") as raw:
        # mtime=0: the same events always give the same bytes (a re-run writes an identical file).
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
            for event in events:
                gz.write(event.to_json())
                gz.write(b"\n")
        raw.flush()
        os.fsync(raw.fileno())
    digest, size = file_digest(temp)
    os.replace(temp, final)
    fsync_directory(directory)
    return WrittenArchive(
        path=final,
        first_id=events[0].id,
        last_id=events[-1].id,
        events=len(events),
        bytes=size,
        sha256=digest,
        oldest_at=min(e.created_at for e in events),
        newest_at=max(e.created_at for e in events),
    )


def read_archive(path: Path) -> Iterator[ArchivedEvent]:
    """Every event of the archive at `path`; `ArchiveError` if it is not whole.

    The whole file is decompressed and checked before the first event is yielded, so a caller
    never acts on the first half of a truncated archive."""
    try:
        with gzip.open(path, "rb") as gz:
            data = gz.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise ArchiveError(f"archive {path} is truncated or corrupt: {exc}") from None
    try:
        events = [ArchivedEvent.from_json(line) for line in data.splitlines() if line]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ArchiveError(f"archive {path} holds a line that is not an archived event: {exc}") from None
    yield from events


def file_digest(path: Path) -> tuple[str, int]:
    """(sha256 hex, size in bytes) of the file at `path`."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def fsync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
