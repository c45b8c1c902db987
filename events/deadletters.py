"""Dead letters: messages a consumer cannot decode are kept in Postgres and copied to the
dead-letter topic with the reason, in one transaction, so the consumer can move on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import DeadLetter
from events.envelope import new_envelope
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

    async def record(self, records: Sequence[BadRecord]) -> None:
        if not records:
            return
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
                    }
                    for r in records
                ],
            )
            await add_events(session, [self._event(r) for r in records])

    def _event(self, r: BadRecord) -> PendingEvent:
        key = r.key.decode("utf-8", "replace") if r.key else f"{r.topic}:{r.partition}:{r.offset}"
        payload = DeadLettered(
            consumer=self._consumer,
            topic=r.topic,
            partition=r.partition,
            offset=r.offset,
            reason=r.reason,
            key=r.key.decode("utf-8", "replace") if r.key else None,
            value=r.value[:_PREVIEW].decode("utf-8", "replace") if r.value else None,
        )
        return PendingEvent(self._topics.dead_letters, new_envelope(payload, key=key))
