"""`comet dlq list | show ID | redrive [--id ID | --all] | discard ID`: dead letters for an operator,
read and handled in the database directly (like `comet schedules`); redrive publishes through a
producer of its own. The logic is `events/dlq.py`, shared with the API's `/dead-letters`."""

from __future__ import annotations

import asyncio
import getpass
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.settings import CommonSettings
from db.engine import make_engine, make_sessionmaker
from db.faults import database_unavailable
from db.models import DeadLetter
from db.repositories import dead_letters as repo
from db.repositories.dead_letters import LetterKind, LetterState
from events import dlq
from events.producer import EventProducer, PublishError

T = TypeVar("T")


class DlqError(Exception):
    """A `comet dlq` failure; the message is one line for the person."""


def operator() -> str:
    """Who did it, as recorded on the letter and in the audit log."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def parse_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise DlqError(f"{value!r} is not a dead letter id (a UUID, as `comet dlq list` shows)") from None


def _run(settings: CommonSettings, work: Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]]) -> T:
    async def main() -> T:
        engine = make_engine(settings, application_name="comet-cli")
        try:
            return await work(make_sessionmaker(engine))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except (DlqError, dlq.DeadLetterNotFoundError, dlq.DeadLetterConflictError) as exc:
        raise DlqError(str(exc)) from None
    except PublishError as exc:
        raise DlqError(
            f"Kafka at {settings.kafka_bootstrap_servers} did not acknowledge; nothing was marked ({exc})"
        ) from None
    except Exception as exc:
        if database_unavailable(exc):
            first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise DlqError(f"the database is unreachable ({first[:200]})") from None
        raise


def _when(letter: DeadLetter) -> str:
    return letter.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def table(letters: Sequence[DeadLetter]) -> Table:
    out = Table(title="dead letters (newest first)", title_justify="left")
    for column in (
        "id",
        "state",
        "consumer",
        "kind",
        "topic",
        "partition:offset",
        "event",
        "at (UTC)",
        "reason",
    ):
        out.add_column(column, overflow="fold")
    for d in letters:
        out.add_row(
            str(d.id),
            repo.state_of(d).value,
            d.consumer,
            d.kind,
            d.topic,
            f"{d.partition}:{d.offset}",
            d.event_type or "-",
            _when(d),
            d.reason if len(d.reason) <= 120 else d.reason[:117] + "...",
        )
    return out


def list_letters(
    settings: CommonSettings,
    *,
    consumer: str | None,
    topic: str | None,
    kind: LetterKind | None,
    state: LetterState | None,
    limit: int,
    console: Console | None = None,
) -> None:
    async def work(sessions: async_sessionmaker[AsyncSession]) -> Sequence[DeadLetter]:
        async with sessions() as session:
            return await repo.list_letters(
                session, limit=limit, consumer=consumer, topic=topic, kind=kind, state=state
            )

    letters = _run(settings, work)
    console = console or Console()
    if not letters:
        console.print(
            "no dead letters" + (" matching the filters" if any((consumer, topic, kind, state)) else "")
        )
        return
    console.print(table(letters))


def show(settings: CommonSettings, letter_id: uuid.UUID, console: Console | None = None) -> None:
    async def work(sessions: async_sessionmaker[AsyncSession]) -> DeadLetter:
        async with sessions() as session:
            letter = await repo.get(session, letter_id)
        if letter is None:
            raise DlqError(f"There is no dead letter {letter_id}")
        return letter

    d = _run(settings, work)
    console = console or Console()
    p = dlq.preview(d.value)
    fields = [
        ("id", str(d.id)),
        ("state", repo.state_of(d).value),
        ("consumer", d.consumer),
        ("kind", d.kind),
        ("topic", f"{d.topic} partition {d.partition} offset {d.offset}"),
        ("key", dlq.show_key(d.key) or "-"),
        ("event", f"{d.event_type or '-'} {d.event_id or ''}".strip()),
        ("run", str(d.run_id) if d.run_id else "-"),
        ("at", _when(d) + " UTC"),
        ("reason", d.reason),
    ]
    if d.redriven_at is not None:
        fields.append(("redriven", f"{d.redriven_at:%Y-%m-%d %H:%M:%S %Z} by {d.redriven_by}"))
    if d.discarded_at is not None:
        fields.append(("discarded", f"{d.discarded_at:%Y-%m-%d %H:%M:%S %Z} by {d.discarded_by}"))
    fields.append(("payload", f"{p.size} bytes" + (" (preview: the first 64 KiB)" if p.truncated else "")))
    for name, value in fields:
        console.print(f"[bold]{name:>10}[/bold]  ", end="")
        console.print(value, markup=False, highlight=False)
    if p.event is not None:
        console.print("decoded as today's code reads it:", style="bold")
        console.print(json.dumps(p.event, indent=2, ensure_ascii=False), markup=False, highlight=False)
    else:
        console.print(f"does not decode today: {p.decode_error}", markup=False, highlight=False)
        if p.text is not None:
            console.print("raw value (UTF-8):", style="bold")
            console.print(p.text, markup=False, highlight=False)
        elif p.base64 is not None:
            console.print("raw value (base64, not UTF-8):", style="bold")
            console.print(p.base64, markup=False, highlight=False)


@dataclass
class RedriveSummary:
    scanned: int = 0
    redriven: int = 0
    skipped: int = 0

    def line(self) -> str:
        return f"scanned {self.scanned} / redriven {self.redriven} / skipped {self.skipped}"


async def _redrive_one(
    sessions: async_sessionmaker[AsyncSession], producer: EventProducer, letter_id: uuid.UUID, by: str
) -> dlq.Redriven:
    async with sessions.begin() as session:
        return await dlq.redrive(session, producer, letter_id, by=by)


def redrive(
    settings: CommonSettings,
    *,
    letter_id: uuid.UUID | None,
    consumer: str | None = None,
    console: Console | None = None,
) -> RedriveSummary:
    """Redrive one letter, or (`letter_id` None) every waiting one, oldest first, each in its own
    transaction; a letter another operator handled meanwhile is skipped, with the reason. The
    progress bar and skips go to `console` (stderr), the result to stdout."""
    console = console or Console(stderr=True)
    by = operator()

    async def work(sessions: async_sessionmaker[AsyncSession]) -> RedriveSummary:
        producer = EventProducer(settings.kafka_bootstrap_servers, client_id="comet-cli")
        summary = RedriveSummary()
        try:
            if letter_id is not None:
                done = await _redrive_one(sessions, producer, letter_id, by)
                summary.scanned = summary.redriven = 1
                also = (
                    f" (and {len(done.also_redriven)} other consumers' letters for it)"
                    if done.also_redriven
                    else ""
                )
                Console().print(f"redriven {done.id} to {done.topic}{also}", highlight=False)
                return summary
            async with sessions() as session:
                ids = await repo.waiting_ids(session, consumer=consumer)
            with Progress(
                TextColumn("redriving"), BarColumn(), MofNCompleteColumn(), console=console, transient=True
            ) as progress:
                task = progress.add_task("redrive", total=len(ids))
                for one in ids:
                    summary.scanned += 1
                    try:
                        await _redrive_one(sessions, producer, one, by)
                        summary.redriven += 1
                    except PublishError as exc:
                        raise DlqError(
                            f"Kafka at {settings.kafka_bootstrap_servers} did not acknowledge {one}; it "
                            f"is still waiting ({summary.line()} before it; {exc})"
                        ) from None
                    except (dlq.DeadLetterConflictError, dlq.DeadLetterNotFoundError) as exc:
                        summary.skipped += 1
                        progress.console.print(f"skipped: {exc}", highlight=False)
                    progress.advance(task)
            return summary
        finally:
            await producer.stop()

    return _run(settings, work)


def discard(settings: CommonSettings, letter_id: uuid.UUID) -> DeadLetter:
    async def work(sessions: async_sessionmaker[AsyncSession]) -> DeadLetter:
        async with sessions.begin() as session:
            return await dlq.discard(session, letter_id, by=operator())

    return _run(settings, work)
