"""What an operator does with dead letters (the API's `/dead-letters` and `comet dlq` both call
here): look at one with a safe preview of its payload, redrive it, or discard it.

Redrive re-publishes the stored key and value, byte for byte, to the letter's original topic
through the producer, so the event goes through normal consumption again: `decode()` (with
today's upcasters) and the consumers' handlers. It cannot run twice by accident: the letter's row
is locked while it is published and marked redriven in the same transaction, so a second
redrive is refused; and should the mark be lost after the publish (a crash between the two), the
consumers' inboxes recognise the event id and the second copy changes nothing. Every consumer
group of the topic receives the copy, so the other groups' letters for the same message (same
topic, partition and offset) are marked redriven with it. See docs/decisions/0017.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import DeadLetter
from db.repositories import audit
from db.repositories import dead_letters as repo
from db.repositories.dead_letters import LetterState
from events.envelope import UndecodableEventError, decode
from events.producer import EventProducer, OutgoingMessage, PublishError

PREVIEW_BYTES = 64 * 1024

REDRIVEN = "dead_letter.redriven"
DISCARDED = "dead_letter.discarded"


class DeadLetterNotFoundError(LookupError):
    """No dead letter has this id."""


class DeadLetterConflictError(Exception):
    """The letter's state does not allow this (already redriven or discarded, or nothing to send)."""


@dataclass(frozen=True, slots=True)
class Redriven:
    id: uuid.UUID
    topic: str
    at: datetime
    by: str
    also_redriven: list[uuid.UUID]


@dataclass(frozen=True, slots=True)
class Preview:
    """A payload shown safely: the event as today's code decodes it (upcast to today's version)
    when it decodes, else why not; the raw bytes as text when they are UTF-8, else as base64; both
    cut at `PREVIEW_BYTES`."""

    size: int
    truncated: bool
    event: dict[str, Any] | None
    decode_error: str | None
    text: str | None
    base64: str | None


def preview(value: bytes | None) -> Preview:
    if value is None:
        return Preview(0, False, None, "message has no value", None, None)
    try:
        event: dict[str, Any] | None = decode(value).model_dump(mode="json")
        error = None
    except UndecodableEventError as exc:
        event, error = None, str(exc)
    head = value[:PREVIEW_BYTES]
    try:
        text: str | None = head.decode("utf-8")
        b64 = None
    except UnicodeDecodeError:
        text, b64 = None, base64.b64encode(head).decode("ascii")
    return Preview(len(value), len(value) > PREVIEW_BYTES, event, error, text, b64)


def show_key(key: bytes | None) -> str | None:
    """A message key as text (undecodable bytes replaced, never raised on)."""
    return None if key is None else key.decode("utf-8", "replace")


async def _locked(session: AsyncSession, letter_id: uuid.UUID) -> DeadLetter:
    letter = await repo.get(session, letter_id, for_update=True)
    if letter is None:
        raise DeadLetterNotFoundError(f"There is no dead letter {letter_id}")
    state = repo.state_of(letter)
    if state is LetterState.DISCARDED:
        raise DeadLetterConflictError(
            f"Dead letter {letter_id} was discarded by {letter.discarded_by} at "
            f"{letter.discarded_at:%Y-%m-%d %H:%M:%S %Z}; it cannot be redriven or discarded again"
        )
    if state is LetterState.REDRIVEN:
        raise DeadLetterConflictError(
            f"Dead letter {letter_id} was already redriven by {letter.redriven_by} at "
            f"{letter.redriven_at:%Y-%m-%d %H:%M:%S %Z}"
        )
    return letter


async def redrive(
    session: AsyncSession,
    producer: EventProducer,
    letter_id: uuid.UUID,
    *,
    by: str,
    actor_id: uuid.UUID | None = None,
) -> Redriven:
    """Re-publish a waiting letter to its topic and mark it (and its siblings) redriven, audited,
    in the caller's transaction; the caller commits. Raises DeadLetterNotFoundError,
    DeadLetterConflictError, or the producer's PublishError (nothing is marked then)."""
    letter = await _locked(session, letter_id)
    if letter.value is None:
        raise DeadLetterConflictError(
            f"Dead letter {letter_id} has no value, so there is nothing to redrive; discard it"
        )
    try:
        await producer.send_many([OutgoingMessage(letter.topic, letter.key or b"", letter.value)])
    except PublishError:
        raise
    except Exception as exc:  # the producer could not even start (Kafka unreachable)
        raise PublishError(repr(exc)) from exc
    now = datetime.now(UTC)
    repo.mark_redriven(letter, by=by, at=now)
    siblings = await session.execute(
        update(DeadLetter)
        .where(
            DeadLetter.topic == letter.topic,
            DeadLetter.partition == letter.partition,
            DeadLetter.offset == letter.offset,
            DeadLetter.id != letter.id,
            DeadLetter.redriven_at.is_(None),
            DeadLetter.discarded_at.is_(None),
        )
        .values(redriven_at=now, redriven_by=by[:255], redrive_count=DeadLetter.redrive_count + 1)
        .returning(DeadLetter.id)
    )
    also = list(siblings.scalars())
    await audit.record(
        session,
        action=REDRIVEN,
        actor_id=actor_id,
        target_type="dead_letter",
        target_id=letter.id,
        details={
            "by": by,
            "consumer": letter.consumer,
            "topic": letter.topic,
            "partition": letter.partition,
            "offset": letter.offset,
            "event_id": None if letter.event_id is None else str(letter.event_id),
            "also_redriven": [str(i) for i in also],
        },
    )
    return Redriven(letter.id, letter.topic, now, by, also)


async def discard(
    session: AsyncSession, letter_id: uuid.UUID, *, by: str, actor_id: uuid.UUID | None = None
) -> DeadLetter:
    """Mark a waiting letter discarded (kept, with who and when), audited, in the caller's
    transaction; the caller commits."""
    letter = await _locked(session, letter_id)
    repo.mark_discarded(letter, by=by, at=datetime.now(UTC))
    await audit.record(
        session,
        action=DISCARDED,
        actor_id=actor_id,
        target_type="dead_letter",
        target_id=letter.id,
        details={"by": by, "consumer": letter.consumer, "topic": letter.topic, "reason": letter.reason[:500]},
    )
    return letter
