"""`comet replay catch-up`: after `comet restore`, apply what the event log holds since the backup
(events/catchup.py), with a progress bar and a one-line summary."""

from __future__ import annotations

import asyncio

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from config.settings import CommonSettings
from db.engine import make_engine, make_sessionmaker
from events.catchup import CatchUpError, CatchUpResult, catch_up
from events.topics import Topics


async def _run(settings: CommonSettings, progress: Progress) -> CatchUpResult:
    engine = make_engine(settings, application_name="comet-catch-up")
    task = progress.add_task("reading the log since the backup", total=None)
    try:
        return await catch_up(
            make_sessionmaker(engine),
            settings.kafka_bootstrap_servers,
            Topics(settings.topic_namespace),
            on_total=lambda n: progress.update(task, total=n),
            on_progress=lambda n: progress.advance(task, n),
        )
    finally:
        await engine.dispose()


def run(settings: CommonSettings) -> str:
    """Catch up; the summary line. CatchUpError for what the person must fix."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as progress:
        try:
            result = asyncio.run(_run(settings, progress))
        except CatchUpError:
            raise
        except OSError as exc:
            raise CatchUpError(f"cannot reach the database or Kafka: {exc}") from None
    return (
        f"caught up from backup {result.backup_id}: scanned {result.scanned}, applied {result.applied}, "
        f"skipped {result.skipped} (already there or undecodable); {result.deliveries} webhook deliveries recovered"
    )
