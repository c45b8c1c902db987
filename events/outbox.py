"""Writing events: an event is a row in the outbox, inserted in the same transaction as the state
change it describes. The row stays as the run's history.

Publishing: when the transaction commits, the events it wrote are handed straight to the
process's producer (`COMMITTED` in the session's info collects them; the backbone's sessions
publish them after commit, see `events/backbone.py`), and their rows are marked published. The
relay is the safety net for whatever that did not publish (a crash, Kafka down): correctness rests
on the rows, speed on the hand-off."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

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


# Session info key: the events written in the session's current transaction, to publish on commit.
COMMITTED = "comet_outbox_events"
# Session info key: a callable saying whether this process hands its committed events to Kafka
# itself (its relay runs); its rows are then marked so other relays leave them alone a moment.
HANDS_OFF = "comet_outbox_hands_off"
# How long relays leave a handed-off row alone: past it (the writer died, or its hand-off failed and
# could not say so), any relay publishes it.
HANDOFF_GRACE = timedelta(seconds=5)


def _run_id(envelope: Envelope) -> uuid.UUID | None:
    value = envelope.payload.get("run_id")
    return uuid.UUID(value) if isinstance(value, str) else None


async def add_events(session: AsyncSession, events: Sequence[PendingEvent]) -> None:
    """Stage `events` for publication as part of `session`'s transaction (one INSERT for all)."""
    if not events:
        return
    now = datetime.now(UTC)
    hands_off = session.info.get(HANDS_OFF)
    until = now + HANDOFF_GRACE if hands_off is not None and hands_off() else None
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
                "handoff_until": None if e.history_only else until,
            }
            for e in events
        ],
    )
    session.info.setdefault(COMMITTED, []).extend(e for e in events if not e.history_only)
