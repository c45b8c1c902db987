"""Bringing a restored database up to date from the event log (`comet replay catch-up`,
docs/decisions/0020).

After `comet restore`, the database is as it was at the backup's snapshot; what happened since is
only in Kafka, at or after the end offsets the backup's manifest recorded (taken before the
snapshot). Catch-up reads every topic of the namespace from those offsets to the ends it finds
when it starts, orders the events by when they happened, and in one transaction per batch:
- keeps them as history (outbox rows, marked published: they are in Kafka already);
- recovers the webhook deliveries acknowledged after the backup (`webhook.received` v2 carries the
  row's contents);
- applies state changes with the one projection (`db/projection.py`): stages that ran are written
  as they ended, never run again;
- records in the inbox the events each consumer group had already consumed (below its committed
  offset now), so a re-published copy changes nothing; events not yet consumed are left for the
  consumers, which take them up when started;
- moves each project's run counter past its highest run number.
Applying is idempotent: a second catch-up (or events that were in the backup already) change
nothing.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import OutboxEvent, RestorePoint, WebhookDelivery
from db.projection import apply_envelopes
from events.envelope import Envelope, UndecodableEventError, decode
from events.positions import LogPosition, Offsets, end_offsets, group_offsets, namespace_partitions
from events.topics import Topics
from schemas.events import WebhookReceived

log = structlog.get_logger(__name__)

BATCH = 1000


class CatchUpError(Exception):
    """Catch-up cannot start; the message is one line for the person."""


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    topic: str
    partition: int
    offset: int
    envelope: Envelope


@dataclass
class CatchUpResult:
    backup_id: str
    scanned: int = 0
    applied: int = 0  # new to this database (history rows written)
    skipped: int = 0  # already there, or undecodable
    deliveries: int = 0


async def pending_restore_point(sessions: async_sessionmaker[AsyncSession]) -> RestorePoint:
    async with sessions() as session:
        point = (
            await session.execute(
                select(RestorePoint)
                .where(RestorePoint.caught_up_at.is_(None))
                .order_by(RestorePoint.restored_at.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
    if point is None:
        raise CatchUpError(
            "this database has no restore waiting for catch-up (run `comet restore --from DIR` first)"
        )
    return point


async def read_since(
    bootstrap: str,
    since: Offsets,
    until: Offsets,
    *,
    on_progress: Callable[[int], None] = lambda _n: None,
) -> tuple[list[LoggedEvent], int]:
    """Every message from `since` (a partition it lacks: from the start) up to `until`, decoded;
    and how many could not be decoded."""
    wanted = {
        TopicPartition(t, p): (since.get(t, {}).get(p, 0), end)
        for t, parts in until.items()
        for p, end in parts.items()
        if end > since.get(t, {}).get(p, 0)
    }
    events: list[LoggedEvent] = []
    undecodable = 0
    if not wanted:
        return events, undecodable
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    try:
        await consumer.start()
        consumer.assign(list(wanted))
        for tp, (start, _end) in wanted.items():
            consumer.seek(tp, start)
        remaining = set(wanted)
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000, max_records=5000)
            for tp, messages in batches.items():
                end = wanted[tp][1]
                for message in messages:
                    if message.offset >= end:
                        break
                    try:
                        envelope = decode(message.value)
                    except UndecodableEventError:
                        undecodable += 1
                        continue
                    events.append(LoggedEvent(tp.topic, tp.partition, message.offset, envelope))
                on_progress(len(messages))
            for tp in list(remaining):
                if await consumer.position(tp) >= wanted[tp][1]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    # A run's events are in one partition in order; across topics, by when they happened (UUIDv7
    # ids break ties). That is the order the projection needs: an attempt exists before it starts.
    events.sort(key=lambda e: (e.envelope.occurred_at, e.envelope.event_id.bytes))
    return events, undecodable


def _consumed(event: LoggedEvent, topics: Topics, groups: dict[str, Offsets]) -> list[str]:
    """The consumer groups (their inbox names) that had consumed `event` before the disaster."""
    found = []
    for group, offsets in groups.items():
        committed = offsets.get(event.topic, {}).get(event.partition)
        if committed is not None and event.offset < committed and _inbox_consumer(group, event.topic, topics):
            found.append(group)
    return found


def _inbox_consumer(group: str, topic: str, topics: Topics) -> bool:
    if group == topics.orchestrator_group:
        return topic in topics.orchestrator_inputs()
    if group == topics.status_reporter_group:
        return topic == topics.run_status
    if group == topics.notifier_group:
        return topic in topics.notifier_inputs()
    return False  # workers claim attempts in Postgres; they keep no inbox


def _delivery_row(payload: WebhookReceived, occurred_at: datetime) -> dict[str, Any] | None:
    if payload.delivery_id is None or payload.body is None or payload.forced or payload.replay_id:
        return None  # a version-1 event, a body too large for the event, or a re-drive of a kept row
    return {
        "id": payload.delivery_row_id,
        "provider": payload.provider,
        "delivery_id": payload.delivery_id,
        "project_id": payload.project_id,
        "event": payload.event or "",
        "action": payload.action,
        "outcome": "accepted",
        "headers": payload.headers,
        "body": base64.b64decode(payload.body),
        "received_at": payload.received_at or occurred_at,
    }


_RUN_COUNTERS = text(
    "UPDATE projects p SET run_counter = m.top FROM "
    "(SELECT project_id, max(number) AS top FROM runs GROUP BY project_id) m "
    "WHERE m.project_id = p.id AND p.run_counter < m.top"
)
_LINK_DELIVERIES = text(
    "UPDATE webhook_deliveries d SET run_id = r.id FROM runs r "
    "WHERE d.id = ANY(CAST(:ids AS uuid[])) AND d.run_id IS NULL AND r.trigger->>'delivery' = d.id::text"
)
_LINK_LEFT_DELIVERIES = text(
    "UPDATE webhook_deliveries d SET run_id = r.id FROM runs r "
    "WHERE d.run_id IS NULL AND d.outcome = 'accepted' AND r.trigger->>'delivery' = d.id::text"
)
_INBOX = text(
    "INSERT INTO inbox (consumer, event_id) SELECT :consumer, unnest(CAST(:ids AS uuid[])) ON CONFLICT DO NOTHING"
)


async def _apply_batch(
    session: AsyncSession, batch: Sequence[LoggedEvent], topics: Topics, groups: dict[str, Offsets]
) -> tuple[int, int]:
    """Apply one batch in the session's transaction; (new history rows, deliveries recovered)."""
    now = datetime.now(UTC)
    rows = [
        {
            "event_id": e.envelope.event_id,
            "event_type": e.envelope.type,
            "topic": e.topic,
            "key": e.envelope.key,
            "envelope": orjson.loads(e.envelope.encode()),
            "run_id": _run_id(e.envelope),
            "created_at": e.envelope.occurred_at,
            "published_at": now,
        }
        for e in batch
    ]
    written = await session.execute(
        insert(OutboxEvent)
        .on_conflict_do_nothing(index_elements=[OutboxEvent.event_id])
        .returning(OutboxEvent.id),
        rows,
    )
    new = len(written.all())
    deliveries = []
    for e in batch:
        if e.envelope.type == WebhookReceived.TYPE:
            payload = e.envelope.typed()
            assert isinstance(payload, WebhookReceived)
            row = _delivery_row(payload, e.envelope.occurred_at)
            if row is not None:
                deliveries.append(row)
    recovered = 0
    if deliveries:
        result = await session.execute(
            insert(WebhookDelivery).on_conflict_do_nothing().returning(WebhookDelivery.id), deliveries
        )
        recovered = len(result.all())
    connection = await session.connection()
    await apply_envelopes(connection, [e.envelope for e in batch])
    if deliveries:
        await session.execute(_LINK_DELIVERIES, {"ids": [d["id"] for d in deliveries]})
    by_consumer: dict[str, list[uuid.UUID]] = {}
    for e in batch:
        for group in _consumed(e, topics, groups):
            by_consumer.setdefault(group, []).append(e.envelope.event_id)
    for consumer, ids in by_consumer.items():
        await session.execute(_INBOX, {"consumer": consumer, "ids": ids})
    return new, recovered


def _run_id(envelope: Envelope) -> uuid.UUID | None:
    value = envelope.payload.get("run_id")
    return uuid.UUID(value) if isinstance(value, str) else None


async def catch_up(
    sessions: async_sessionmaker[AsyncSession],
    bootstrap: str,
    topics: Topics,
    *,
    on_total: Callable[[int], None] = lambda _n: None,
    on_progress: Callable[[int], None] = lambda _n: None,
) -> CatchUpResult:
    """Apply what the log holds since the pending restore point's backup; mark it caught up."""
    point = await pending_restore_point(sessions)
    since = LogPosition.from_json(point.manifest["kafka"]).topics
    if point.manifest.get("topic_namespace") not in (None, topics.namespace):
        raise CatchUpError(
            f"the backup was taken with COMET_TOPIC_NAMESPACE={point.manifest['topic_namespace']}, "
            f"not {topics.namespace}"
        )
    partitions = await namespace_partitions(bootstrap, topics)
    until = await end_offsets(bootstrap, partitions)
    for t, parts in since.items():
        for p, offset in parts.items():
            if until.get(t, {}).get(p, 0) < offset:
                raise CatchUpError(
                    f"{t}[{p}] ends at {until.get(t, {}).get(p, 0)}, before the backup's {offset}"
                )
    groups = await group_offsets(bootstrap, topics)
    on_total(sum(end - since.get(t, {}).get(p, 0) for t, parts in until.items() for p, end in parts.items()))
    events, undecodable = await read_since(bootstrap, since, until, on_progress=on_progress)
    result = CatchUpResult(backup_id=point.backup_id, scanned=len(events) + undecodable, skipped=undecodable)
    for start in range(0, len(events), BATCH):
        batch = events[start : start + BATCH]
        async with sessions.begin() as session:
            new, recovered = await _apply_batch(session, batch, topics, groups)
        result.applied += new
        result.skipped += len(batch) - new
        result.deliveries += recovered
    async with sessions.begin() as session:
        await session.execute(_RUN_COUNTERS)
        # A delivery and its run's events can fall in different batches: link what is left.
        await session.execute(_LINK_LEFT_DELIVERIES)
        await session.execute(
            update(RestorePoint)
            .where(RestorePoint.id == point.id)
            .values(caught_up_at=datetime.now(UTC), events_applied=result.applied)
        )
    log.info(
        "caught up from the log",
        backup_id=point.backup_id,
        scanned=result.scanned,
        applied=result.applied,
        deliveries=result.deliveries,
    )
    return result
