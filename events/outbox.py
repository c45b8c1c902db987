"""Writing events: an event is a row in the outbox, inserted in the same transaction as the state
change it describes. The relay publishes it; the row stays as the run's history."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import OutboxEvent
from events.envelope import Envelope


@dataclass(frozen=True, slots=True)
class PendingEvent:
    topic: str
    envelope: Envelope
    # Kept in the run's history but never published (marked published as it is written).
    history_only: bool = False


def _run_id(envelope: Envelope) -> uuid.UUID | None:
    value = envelope.payload.get("run_id")
    return uuid.UUID(value) if isinstance(value, str) else None


async def add_events(session: AsyncSession, events: Sequence[PendingEvent]) -> None:
    """Stage `events` for publication as part of `session`'s transaction (one INSERT for all)."""
    if not events:
        return
    now = datetime.now(UTC)
    await session.execute(
        insert(OutboxEvent),
        [
            {
                "event_id": e.envelope.event_id,
                "event_type": e.envelope.type,
                "topic": e.topic,
                "key": e.envelope.key,
                "envelope": e.envelope.model_dump(mode="json"),
                "run_id": _run_id(e.envelope),
                "published_at": now if e.history_only else None,
            }
            for e in events
        ],
    )
