"""Re-publishing a window of the event history to its topic (`comet replay events`).

Consumers record every event id in their inbox in the same transaction as its effect, so an event
they already applied changes nothing when it comes again: a replay is harmless, and re-drives
whatever a consumer missed. Events go out exactly as written (at their own schema version;
consumers upcast), in the order they were written, one batch acknowledged before the next is
sent, so one key's (one run's) events keep their order. History-only events (`run.note`) were
never published and are not now.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from events.admin import TopicAdmin
from events.history import Window, events_in
from events.producer import EventProducer, OutgoingMessage


@dataclass(slots=True)
class ReplayOutcome:
    scanned: int = 0
    published: int = 0
    skipped: int = 0  # history-only events, never published
    by_type: Counter[str] = field(default_factory=Counter)  # what was (or would be) published


async def republish(
    sessions: async_sessionmaker[AsyncSession],
    producer: EventProducer | None,
    admin: TopicAdmin | None,
    window: Window,
    *,
    batch_size: int = 500,
    archive_dir: Path | None = None,
    on_batch: Callable[[int], None] = lambda _n: None,
) -> ReplayOutcome:
    """Publish the window's events to `window.topic`; with no producer (a dry run), only count
    them. `on_batch` hears how many events each batch scanned."""
    outcome = ReplayOutcome()
    if producer is not None and admin is not None:
        await admin.ensure([window.topic])
    async for batch in events_in(sessions, window, batch_size=batch_size, archive_dir=archive_dir):
        outcome.scanned += len(batch)
        wanted = [e for e in batch if not e.history_only]
        outcome.skipped += len(batch) - len(wanted)
        outcome.by_type.update(e.event_type for e in wanted)
        if producer is not None and wanted:
            # send_many returns once the broker acknowledged the whole batch: the next batch
            # cannot overtake it, so each key's events stay in the order they were written.
            await producer.send_many(
                [OutgoingMessage(e.topic, e.key.encode(), orjson.dumps(e.envelope)) for e in wanted]
            )
            outcome.published += len(wanted)
        on_batch(len(batch))
    return outcome
