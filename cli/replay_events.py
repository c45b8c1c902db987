"""`comet replay events --topic NAME --since T [--until T] [--dry-run]`: re-publish a window of the
event history to its topic (events/replay.py), with a progress bar and a one-line summary; a dry
run counts what would go, per event type."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cli.moments import parse_moment
from config.settings import CommonSettings
from db.engine import make_engine, make_sessionmaker
from db.faults import database_unavailable
from events import history
from events.admin import TopicAdmin
from events.producer import EventProducer, PublishError
from events.replay import ReplayOutcome, republish
from events.topics import Topics


class ReplayEventsError(Exception):
    """The replay cannot be done; the message is one line for the person."""


def window(
    settings: CommonSettings, topic: str, since: str, until: str | None, now: datetime
) -> history.Window:
    """The window the arguments name; a ReplayEventsError says what is wrong with them."""
    topics = Topics(settings.topic_namespace)
    resolved = topics.by_logical_name(topic)
    if resolved is None:
        raise ReplayEventsError(f"unknown topic {topic!r}: use one of {', '.join(topics.logical_names())}")
    try:
        start = parse_moment(since, now)
        end = parse_moment(until, now) if until is not None else None
    except ValueError as exc:
        raise ReplayEventsError(str(exc)) from None
    if end is not None and end <= start:
        raise ReplayEventsError(f"--until ({_at(end)}) must be after --since ({_at(start)})")
    return history.Window(resolved, start, end)


def _at(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def describe(w: history.Window) -> str:
    return f"{w.topic} from {_at(w.since)} to {_at(w.until) if w.until else 'now'}"


def summary(w: history.Window, outcome: ReplayOutcome, *, dry_run: bool) -> str:
    """The one-line summary (a dry run's says what would be published, per event type)."""
    skipped = f", skipped {outcome.skipped} (history only, never published)" if outcome.skipped else ""
    if dry_run:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(outcome.by_type.items())) or "nothing"
        return (
            f"dry run: scanned {outcome.scanned} events of {describe(w)}; would publish "
            f"{sum(outcome.by_type.values())} ({kinds}){skipped}"
        )
    return f"scanned {outcome.scanned} events of {describe(w)}; published {outcome.published}{skipped}"


async def _replay(
    settings: CommonSettings, w: history.Window, dry_run: bool, console: Console
) -> ReplayOutcome:
    engine = make_engine(settings, application_name="comet-replay")
    producer = None if dry_run else EventProducer(settings.kafka_bootstrap_servers, client_id="comet-replay")
    admin = (
        None
        if dry_run
        else TopicAdmin(settings.kafka_bootstrap_servers, partitions=settings.kafka_partitions)
    )
    try:
        sessions = make_sessionmaker(engine)
        total = await history.count(sessions, w, archive_dir=settings.archive_dir)
        if total == 0:
            raise ReplayEventsError(f"no events of {describe(w)}: nothing to replay")
        if producer is not None:
            try:
                await producer.start()
            except Exception as exc:
                raise ReplayEventsError(
                    f"cannot publish: Kafka at {settings.kafka_bootstrap_servers} does not answer ({exc!r:.200})"
                ) from None
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("scanning" if dry_run else "publishing", total=total)
            return await republish(
                sessions,
                producer,
                admin,
                w,
                archive_dir=settings.archive_dir,
                on_batch=lambda n: progress.advance(task, n),
            )
    finally:
        if producer is not None:
            await producer.stop()
        await engine.dispose()


def replay(
    settings: CommonSettings,
    *,
    topic: str,
    since: str,
    until: str | None,
    dry_run: bool,
    console: Console | None = None,
) -> str:
    """Replay (or count) the window; returns the summary line."""
    w = window(settings, topic, since, until, datetime.now(UTC))
    console = console or Console(stderr=True)
    try:
        outcome = asyncio.run(_replay(settings, w, dry_run, console))
    except PublishError as exc:
        raise ReplayEventsError(
            f"the broker did not acknowledge a batch ({exc}); events published so far stay published, "
            "and replaying the window again is harmless"
        ) from None
    except ReplayEventsError:
        raise
    except Exception as exc:
        if database_unavailable(exc):
            first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise ReplayEventsError(
                f"cannot read the event history: the database is unreachable ({first[:200]})"
            ) from None
        raise
    return summary(w, outcome, dry_run=dry_run)
