"""Dead letters: messages a consumer cannot decode, and poison events its handler kept failing on,
are kept in Postgres and copied to the dead-letter topic with the reason, in one transaction, so
the consumer can move on. A poison event's run gets the dead letter in its history (the event is
keyed and tagged with the run), so the run shows why it stopped moving."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from pydantic import ValidationError
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import DeadLetter
from events.envelope import Envelope, new_envelope
from events.outbox import PendingEvent, add_events
from events.topics import Topics
from schemas.events import DeadLettered

_PREVIEW = 64 * 1024


@dataclass(frozen=True, slots=True)
class BadRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str


class DeadLetterSink:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], topics: Topics, consumer: str) -> None:
        self._sessions = sessions
        self._topics = topics
        self._consumer = consumer

    async def record(self, records: Sequence[BadRecord], *, kind: str = "undecodable") -> None:
        if not records:
            return
        letters = [(r, _identify(r)) for r in records]
        async with self._sessions.begin() as session:
            await session.execute(
                insert(DeadLetter),
                [
                    {
                        "consumer": self._consumer,
                        "topic": r.topic,
                        "partition": r.partition,
                        "offset": r.offset,
                        "key": r.key,
                        "value": r.value,
                        "reason": r.reason,
                        "kind": kind,
                        "event_id": event_id,
                        "event_type": event_type,
                        "run_id": run_id,
                    }
                    for r, (event_id, event_type, run_id) in letters
                ],
            )
            await add_events(session, [self._event(r, kind, *ids) for r, ids in letters])

    def _event(
        self,
        r: BadRecord,
        kind: str,
        event_id: uuid.UUID | None,
        event_type: str | None,
        run_id: uuid.UUID | None,
    ) -> PendingEvent:
        key = _text(r.key) or f"{r.topic}:{r.partition}:{r.offset}"
        payload = DeadLettered(
            consumer=self._consumer,
            topic=r.topic,
            partition=r.partition,
            offset=r.offset,
            reason=r.reason,
            key=_text(r.key),
            value=_text(r.value[:_PREVIEW] if r.value else None),
            kind=kind,
            original_event_id=event_id,
            original_type=event_type,
            run_id=run_id,
        )
        return PendingEvent(self._topics.dead_letters, new_envelope(payload, key=key))


def _text(raw: bytes | None) -> str | None:
    """Bytes as text an event can carry: invalid UTF-8 and NUL (which Postgres cannot store in
    JSONB or text, so the letter itself could not be recorded) are replaced."""
    if not raw:
        return None
    return raw.decode("utf-8", "replace").replace("\x00", "\ufffd")


def _identify(r: BadRecord) -> tuple[uuid.UUID | None, str | None, uuid.UUID | None]:
    """The event id, type and run of a dead letter, when its envelope is readable, even if its
    payload is not (an event of a version no upcaster reaches is still named, with its run)."""
    try:
        envelope = Envelope.model_validate(orjson.loads(r.value or b""))
    except (orjson.JSONDecodeError, ValidationError):
        return None, None, None
    run_id = envelope.payload.get("run_id")
    try:
        run = uuid.UUID(run_id) if isinstance(run_id, str) else None
    except ValueError:
        run = None
    return envelope.event_id, envelope.type, run
