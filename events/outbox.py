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
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from events.envelope import Envelope


@dataclass(frozen=True, slots=True)
class PendingEvent:
    topic: str
    envelope: Envelope
    # Kept in the run's history but never published (marked published as it is written).
    history_only: bool = False
    # The envelope as JSON, made once when the row is written: the same bytes go to Kafka.
    encoded: bytes | None = None

    def value(self) -> bytes:
        """The Kafka message value: the envelope's JSON."""
        return self.encoded if self.encoded is not None else self.envelope.encode()


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


# One statement for a transaction's events, whatever their number (the same prepared statement
# every time); WITH ORDINALITY keeps the ids, and so one key's publication order, in write order.
_INSERT = text(
    """
    INSERT INTO outbox (event_id, event_type, topic, key, envelope, run_id, published_at, handoff_until)
    SELECT event_id, event_type, topic, key, envelope, run_id, published_at, handoff_until
      FROM unnest(CAST(:event_ids AS uuid[]), CAST(:types AS text[]), CAST(:topics AS text[]),
                  CAST(:keys AS text[]), CAST(:envelopes AS jsonb[]), CAST(:run_ids AS uuid[]),
                  CAST(:published AS timestamptz[]), CAST(:until AS timestamptz[]))
           WITH ORDINALITY AS e(event_id, event_type, topic, key, envelope, run_id, published_at, handoff_until, n)
     ORDER BY n
    """
)


async def add_events(session: AsyncSession, events: Sequence[PendingEvent]) -> None:
    """Stage `events` for publication as part of `session`'s transaction (one INSERT for all)."""
    if not events:
        return
    now = datetime.now(UTC)
    hands_off = session.info.get(HANDS_OFF)
    until = now + HANDOFF_GRACE if hands_off is not None and hands_off() else None
    written = [e if e.encoded is not None else replace(e, encoded=e.value()) for e in events]
    await session.execute(
        _INSERT,
        {
            "event_ids": [e.envelope.event_id for e in written],
            "types": [e.envelope.type for e in written],
            "topics": [e.topic for e in written],
            "keys": [e.envelope.key for e in written],
            "envelopes": [e.value().decode() for e in written],
            "run_ids": [_run_id(e.envelope) for e in written],
            "published": [now if e.history_only else None for e in written],
            "until": [None if e.history_only else until for e in written],
        },
    )
    session.info.setdefault(COMMITTED, []).extend(e for e in written if not e.history_only)
