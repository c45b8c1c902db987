"""`comet replay rebuild`: a database's runs, stages and attempts rebuilt, in another (empty,
migrated) database, from the event history alone — through the one projection the live processes
write with (`db/projection.py`, decision 0021).

What is copied and what is derived:
- configuration is copied as it is (the events name it, they do not describe it): `users`,
  `projects`, `memberships`, `pipeline_definitions`, `environments` (decision 0027);
- derived state is rebuilt from the events: `runs`, `stages`, `stage_attempts`, `deployments`;
- everything else (logs, test cases, coverage files, webhook deliveries, the event history itself,
  audit, sessions, secrets) is neither: a rebuilt database is for checking and recovering state.

The history is read in outbox order (for one run, the order its transactions committed in) in
large batches; each batch is folded and written in one transaction together with the progress
row, so an interrupted rebuild continues where it stopped, and a second rebuild from the same
source applies only what is new (nothing, on a quiet system).
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import asyncpg
import orjson
from sqlalchemy import Table, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from db import projection
from db.engine import asyncpg_dsn
from db.models import RebuildProgress
from events.archive import ArchiveError, archive_files, read_archive
from events.upcasting import UPCASTERS

CONFIGURATION = ("users", "projects", "memberships", "pipeline_definitions", "environments")
DERIVED = tuple(t.name for t in projection.DERIVED_TABLES)


class RebuildError(Exception):
    """The rebuild cannot start or go on; the message is one line for the person."""


@dataclass(slots=True)
class RebuildOutcome:
    source: str = ""
    scanned: int = 0
    applied: int = 0  # events that changed rows
    skipped: int = 0  # events of types that change no row
    resumed_after: int = 0  # the outbox id a previous rebuild from this source had reached
    copied: dict[str, int] = field(default_factory=dict)


def sqlalchemy_url(url: str) -> str:
    """`postgresql://…` (what people type) as the asyncpg URL SQLAlchemy needs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


async def connect(url: str) -> asyncpg.Connection:
    """A plain asyncpg connection to `url` that reads JSON columns with orjson."""
    conn = await asyncpg.connect(asyncpg_dsn(sqlalchemy_url(url)))
    # Binary jsonb is a version byte and the text: orjson reads the bytes as they come.
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda v: b"\x01" + orjson.dumps(v),
        decoder=lambda b: orjson.loads(b[1:]),
        schema="pg_catalog",
        format="binary",
    )
    return conn


async def schema_version(conn: asyncpg.Connection) -> str | None:
    """The database's Alembic revision; None when it was never migrated."""
    exists = await conn.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL")
    return await conn.fetchval("SELECT version_num FROM alembic_version") if exists else None


async def source_identity(conn: asyncpg.Connection) -> str:
    """The source database's name and oid (stable while it lives, whatever retention removes)."""
    row = await conn.fetchrow("SELECT datname, oid FROM pg_database WHERE datname = current_database()")
    assert row is not None
    return f"{row['datname']}:{row['oid']}"


async def _check_target(source: asyncpg.Connection, target: asyncpg.Connection, identity: str) -> int:
    """Refuse a target that is not migrated like the source or not empty (unless it was rebuilt
    from this very source: then return the outbox id it reached, to go on from there)."""
    want, have = await schema_version(source), await schema_version(target)
    if have is None:
        raise RebuildError("the target database is not migrated: run `comet migrate` against it first")
    if have != want:
        raise RebuildError(
            f"the target database is at schema revision {have}, this one at {want}: migrate both"
        )
    reached = await target.fetchval("SELECT last_outbox_id FROM rebuild_progress WHERE source = $1", identity)
    if reached is not None:
        return int(reached)
    filled = [
        table
        for table in (*CONFIGURATION, *DERIVED, "rebuild_progress")
        if await target.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})")  # noqa: S608 - fixed names
    ]
    if filled:
        raise RebuildError(
            f"the target database is not empty ({', '.join(filled)} hold rows): rebuild needs an empty, "
            "migrated database"
        )
    return 0


async def _copy_configuration(source: asyncpg.Connection, target: asyncpg.Connection) -> dict[str, int]:
    """Copy the configuration tables (parents first); rows the target has already are kept."""
    copied: dict[str, int] = {}
    for table in CONFIGURATION:
        rows = await source.fetch(f"SELECT * FROM {table}")  # noqa: S608 - fixed names
        if not rows:
            copied[table] = 0
            continue
        columns = list(rows[0].keys())
        names = ", ".join(f'"{c}"' for c in columns)
        staging = f"rebuild_{table}"
        await target.execute(f"CREATE TEMP TABLE {staging} (LIKE {table}) ON COMMIT DROP")
        await target.copy_records_to_table(staging, records=[tuple(r) for r in rows], columns=columns)
        status = await target.execute(
            f"INSERT INTO {table} ({names}) SELECT {names} FROM {staging} ON CONFLICT DO NOTHING"  # noqa: S608
        )
        copied[table] = int(status.rsplit(" ", 1)[-1])
    return copied


# Only the events that change rows are read (the others are counted): a third of the history.
_READ = (
    "SELECT id, envelope FROM outbox WHERE id > $1 AND id <= $2 AND event_type = ANY($3) ORDER BY id LIMIT $4"
)
_TYPES = sorted(projection.PROJECTED_TYPES)


async def _read(conn: asyncpg.Connection, after: int, last: int, limit: int) -> Sequence[asyncpg.Record]:
    return await conn.fetch(_READ, after, last, _TYPES, limit)


def _events(rows: Sequence[tuple[int, dict[str, Any]]]) -> list[projection.Event]:
    return [projection.from_json(envelope, UPCASTERS.upcast) for _, envelope in rows]


def _archived(directory: Path | None, after: int) -> tuple[list[tuple[int, dict[str, Any]]], int]:
    """The archived events after outbox id `after` that change rows, in id order, and how many
    archived events there are after it in all (retention moved finished runs' history there)."""
    if directory is None or not directory.is_dir():
        return [], 0
    found: list[tuple[int, dict[str, Any]]] = []
    total = 0
    try:
        for path in archive_files(directory):
            for e in read_archive(path):
                if e.id > after:
                    total += 1
                    if e.event_type in projection.PROJECTED_TYPES:
                        found.append((e.id, e.envelope))
    except ArchiveError as exc:
        raise RebuildError(str(exc)) from None
    found.sort(key=lambda e: e[0])
    return found, total


def _merged(
    live: Sequence[asyncpg.Record], archived: list[tuple[int, dict[str, Any]]], upto: int | None
) -> list[tuple[int, dict[str, Any]]]:
    """The batch's outbox rows with the archived events up to `upto` (None: all that are left),
    in id order, each id once; the archived ones taken are removed from `archived`."""
    cut = (
        len(archived)
        if upto is None
        else next((i for i, e in enumerate(archived) if e[0] > upto), len(archived))
    )
    taken, archived[:cut] = archived[:cut], []
    merged: list[tuple[int, dict[str, Any]]] = []
    last = -1
    for seq, envelope in heapq.merge(((r["id"], r["envelope"]) for r in live), taken, key=lambda e: e[0]):
        if seq != last:  # an event both archived and still in the outbox (an archiver's crash)
            merged.append((seq, envelope))
            last = seq
    return merged


async def _write_batch(
    conn: AsyncConnection, changes: projection.RowChanges, identity: str, last_id: int, scanned: int
) -> None:
    await projection.write(conn, changes)
    table = cast(Table, RebuildProgress.__table__)
    row = {"source": identity, "last_outbox_id": last_id, "events_applied": scanned}
    stmt = insert(table).values(**row)
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["source"],
            set_={
                "last_outbox_id": stmt.excluded.last_outbox_id,
                "events_applied": table.c.events_applied + stmt.excluded.events_applied,
                "updated_at": text("now()"),
            },
        )
    )


async def rebuild(
    source_url: str,
    target_url: str,
    *,
    batch_size: int = 20_000,
    archive_dir: Path | None = None,
    on_start: Callable[[int], None] = lambda _total: None,
    on_batch: Callable[[int], None] = lambda _n: None,
) -> RebuildOutcome:
    """Rebuild `target_url`'s derived tables from `source_url`'s event history (its outbox, and the
    archives in `archive_dir`). `on_start` hears how many events are to be read, `on_batch` how
    many each batch read."""
    outcome = RebuildOutcome()
    source = await connect(source_url)
    target = await connect(target_url)
    engine = create_async_engine(sqlalchemy_url(target_url), pool_size=1, max_overflow=0)
    try:
        outcome.source = await source_identity(source)
        reached = await _check_target(source, target, outcome.source)
        outcome.resumed_after = reached
        async with target.transaction():
            outcome.copied = await _copy_configuration(source, target)
        await target.close()
        # The history as it is now: what is written meanwhile is for the next rebuild.
        span = await source.fetchrow(
            "SELECT count(*) AS n, count(*) FILTER (WHERE event_type = ANY($2)) AS applied, "
            "coalesce(max(id), $1) AS last FROM outbox WHERE id > $1",
            reached,
            _TYPES,
        )
        assert span is not None
        archived, archived_total = await asyncio.to_thread(_archived, archive_dir, reached)
        last = max(int(span["last"]), archived[-1][0] if archived else reached)
        on_start(int(span["applied"]) + len(archived))
        async with engine.connect() as conn:
            pending = asyncio.ensure_future(_read(source, reached, last, batch_size))
            while True:
                rows = await pending
                if rows:
                    pending = asyncio.ensure_future(_read(source, rows[-1]["id"], last, batch_size))
                batch = _merged(rows, archived, rows[-1]["id"] if rows else None)
                if not batch:
                    break
                last_id = batch[-1][0]
                changes = projection.fold(_events(batch))
                async with conn.begin():
                    await _write_batch(conn, changes, outcome.source, last_id, len(batch))
                outcome.applied += changes.applied
                on_batch(len(batch))
                if not rows and not archived:
                    break
            if last > reached:
                async with conn.begin():  # the events after the last one applied change no row
                    await _write_batch(conn, projection.RowChanges(), outcome.source, last, 0)
        outcome.scanned = int(span["n"]) + archived_total
        outcome.skipped = outcome.scanned - outcome.applied
        return outcome
    finally:
        await engine.dispose()
        if not target.is_closed():
            await target.close()
        await source.close()


def first_line(exc: BaseException) -> str:
    return next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)[:300]


def describe_copy(copied: dict[str, Any]) -> str:
    return ", ".join(f"{n} {t}" for t, n in copied.items())
