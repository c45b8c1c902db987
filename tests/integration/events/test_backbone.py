"""The event backbone on the real broker and database: outbox → relay → Kafka → consumer →
inbox, redelivery absorbed by the inbox, undecodable messages dead-lettered."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from config.settings import OrchestratorSettings
from db.engine import asyncpg_dsn
from db.models import DeadLetter, OutboxEvent
from events.backbone import Backbone
from events.consumer import EventConsumer, Received
from events.deadletters import DeadLetterSink
from events.envelope import new_envelope
from events.inbox import claim_new
from events.outbox import PendingEvent, add_events
from events.producer import EventProducer, OutgoingMessage
from schemas.events import RunCancelRequested

pytestmark = pytest.mark.integration


@pytest.fixture
async def backbone(common_env: dict[str, Any]) -> AsyncIterator[Backbone]:
    settings = OrchestratorSettings(**{**common_env, "topic_namespace": f"bb{secrets.token_hex(4)}"})
    bb = Backbone(settings, "test")
    await bb.start_kafka()
    yield bb
    await bb.stop()


class CountingHandler:
    """Applies each event at most once per consumer name, counting effects (the inbox pattern)."""

    def __init__(self, backbone: Backbone, name: str) -> None:
        self.backbone = backbone
        self.name = name
        self.seen: list[uuid.UUID] = []
        self.applied: list[uuid.UUID] = []
        self.event = asyncio.Event()

    async def __call__(self, batch: list[Received]) -> None:
        async with self.backbone.sessions.begin() as session:
            fresh = await claim_new(session, self.name, [r.envelope.event_id for r in batch])
        for r in batch:
            self.seen.append(r.envelope.event_id)
            if r.envelope.event_id in fresh:
                self.applied.append(r.envelope.event_id)
        self.event.set()


async def _until(predicate: object, timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.02)


def _consumer(backbone: Backbone, handler: CountingHandler, topic: str) -> EventConsumer:
    return EventConsumer(
        name=handler.name,
        topics=[topic],
        group_id=f"{backbone.topics.namespace}.{handler.name}",
        bootstrap_servers=backbone.settings.kafka_bootstrap_servers,
        handler=handler,
        dead_letters=DeadLetterSink(backbone.sessions, backbone.topics, handler.name),
    )


async def test_an_outbox_event_reaches_the_consumer_once_and_a_redelivery_changes_nothing(
    backbone: Backbone,
) -> None:
    topic = backbone.topics.run_commands
    envelope = new_envelope(RunCancelRequested(run_id=uuid.uuid4(), source="user"), key="k1")
    async with backbone.sessions.begin() as session:
        await add_events(session, [PendingEvent(topic, envelope)])
    backbone.wake_relay()
    handler = CountingHandler(backbone, "inbox-test")
    consumer = _consumer(backbone, handler, topic)
    task = asyncio.create_task(consumer.run())
    try:
        await _until(lambda: envelope.event_id in handler.seen)
        # The same event again, as after a relay crash between publish and mark.
        await backbone.producer.send_many([OutgoingMessage(topic, b"k1", envelope.encode())])
        await _until(lambda: handler.seen.count(envelope.event_id) == 2)
    finally:
        consumer.stop()
        await task
    assert handler.applied == [envelope.event_id]
    async with backbone.sessions() as session:
        row = (
            await session.scalars(select(OutboxEvent).where(OutboxEvent.event_id == envelope.event_id))
        ).one()
    assert row.published_at is not None, "the relay did not mark the row published"


async def test_an_undecodable_message_is_dead_lettered_with_its_reason_and_the_consumer_moves_on(
    backbone: Backbone,
) -> None:
    topic = backbone.topics.stage_results
    good = new_envelope(RunCancelRequested(run_id=uuid.uuid4(), source="user"), key="k2")
    await backbone.producer.send_many(
        [
            OutgoingMessage(topic, b"k2", b"{not json"),
            OutgoingMessage(
                topic, b"k2", orjson.dumps({**good.model_dump(mode="json"), "type": "no.such.type"})
            ),
            OutgoingMessage(topic, b"k2", good.encode()),
        ]
    )
    handler = CountingHandler(backbone, "dlq-test")
    consumer = _consumer(backbone, handler, topic)
    task = asyncio.create_task(consumer.run())
    try:
        await _until(lambda: good.event_id in handler.applied)
    finally:
        consumer.stop()
        await task
    async with backbone.sessions() as session:
        letters = (
            await session.scalars(
                select(DeadLetter).where(DeadLetter.consumer == "dlq-test").order_by(DeadLetter.offset)
            )
        ).all()
    assert letters[0].value == b"{not json"
    assert "not JSON" in letters[0].reason
    assert "unknown event type 'no.such.type'" in letters[1].reason
    backbone.wake_relay()
    dlq = AIOKafkaConsumer(
        backbone.topics.dead_letters,
        bootstrap_servers=backbone.settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await dlq.start()
    try:
        reasons: list[str] = []
        async with asyncio.timeout(30):
            while len(reasons) < 2:
                message = await dlq.getone()
                assert message.value is not None
                reasons.append(orjson.loads(message.value)["payload"]["reason"])
    finally:
        await dlq.stop()
    assert any("not JSON" in r for r in reasons)


async def test_committed_offsets_mean_a_restarted_consumer_does_not_see_old_events_again(
    backbone: Backbone,
) -> None:
    topic = backbone.topics.webhooks
    first = new_envelope(RunCancelRequested(run_id=uuid.uuid4(), source="user"), key="k3")
    await backbone.producer.send_many([OutgoingMessage(topic, b"k3", first.encode())])
    handler = CountingHandler(backbone, "restart-test")
    consumer = _consumer(backbone, handler, topic)
    task = asyncio.create_task(consumer.run())
    await _until(lambda: first.event_id in handler.seen)
    consumer.stop()
    await task

    second = new_envelope(RunCancelRequested(run_id=uuid.uuid4(), source="user"), key="k3")
    await backbone.producer.send_many([OutgoingMessage(topic, b"k3", second.encode())])
    again = CountingHandler(backbone, "restart-test")
    consumer = _consumer(backbone, again, topic)
    task = asyncio.create_task(consumer.run())
    try:
        await _until(lambda: second.event_id in again.seen)
    finally:
        consumer.stop()
        await task
    assert first.event_id not in again.seen


async def test_an_outbox_insert_wakes_other_relays_only_for_rows_nobody_hands_off(own_database: str) -> None:
    """Rows the writer hands to Kafka itself (`handoff_until`) or that are history only need no
    other relay (decision 0033); a row written by a process without a running relay does."""
    listener = await asyncpg.connect(asyncpg_dsn(own_database))
    writer = await asyncpg.connect(asyncpg_dsn(own_database))
    heard: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener("comet_outbox", lambda *args: heard.put_nowait(args[-1]))
    insert = (
        "INSERT INTO outbox (event_id, event_type, topic, key, envelope, published_at, handoff_until) "
        "VALUES ($1, 'run.cancel_requested', 't', 'k', '{}', $2, $3)"
    )
    try:
        handed_off = await writer.execute(
            insert, uuid.uuid4(), None, datetime.now(UTC) + timedelta(seconds=5)
        )
        history_only = await writer.execute(insert, uuid.uuid4(), datetime.now(UTC), None)
        unhandled = await writer.execute(insert, uuid.uuid4(), None, None)
        assert [handed_off, history_only, unhandled] == ["INSERT 0 1"] * 3
        # Notifications arrive in commit order: once the third insert's is heard, any from the
        # first two would have been heard before it.
        async with asyncio.timeout(10):
            await heard.get()
        assert heard.empty()
    finally:
        await listener.close()
        await writer.close()


class SlowProducer(EventProducer):
    """A real producer taking a moment to publish, as under load."""

    async def send_many(
        self, messages: Sequence[OutgoingMessage], *, enqueued: asyncio.Event | None = None
    ) -> None:
        await asyncio.sleep(0.3)
        await super().send_many(messages, enqueued=enqueued)


async def test_a_handed_off_event_is_published_once_though_another_relay_was_woken_for_it(
    common_env: dict[str, Any],
) -> None:
    """Another process's relay, woken by the commit's NOTIFY, leaves the row to the hand-off of the
    process that wrote it (it published most events twice before, decision 0030)."""
    settings = OrchestratorSettings(**{**common_env, "topic_namespace": f"bb{secrets.token_hex(4)}"})
    writer, other = Backbone(settings, "writer"), Backbone(settings, "other")
    writer.producer = SlowProducer(settings.kafka_bootstrap_servers)
    writer.relay._producer = writer.producer
    topic = writer.topics.run_commands
    written = [
        new_envelope(RunCancelRequested(run_id=uuid.uuid4(), source="user"), key=f"k{i}") for i in range(10)
    ]
    await writer.start_kafka()
    await other.start_kafka()
    try:
        await _until(lambda: writer.relay.hands_off and other.relay.hands_off)
        for envelope in written:
            async with writer.sessions.begin() as session:
                await add_events(session, [PendingEvent(topic, envelope)])
        async with writer.sessions() as session:
            await _until_async(session, [e.event_id for e in written])
    finally:
        await writer.stop()
        await other.stop()
    seen = await _read_all(settings.kafka_bootstrap_servers, topic)
    assert sorted(seen) == sorted(e.event_id for e in written)
    assert other.relay.published == 0


async def _until_async(session: AsyncSession, ids: list[uuid.UUID], timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while await session.scalar(
            select(func.count()).where(OutboxEvent.event_id.in_(ids), OutboxEvent.published_at.is_(None))
        ):
            await session.rollback()
            await asyncio.sleep(0.05)


async def _read_all(bootstrap: str, topic: str) -> list[uuid.UUID]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    seen: list[uuid.UUID] = []
    try:
        while records := await consumer.getmany(timeout_ms=2000):
            seen += [uuid.UUID(orjson.loads(r.value)["event_id"]) for rs in records.values() for r in rs]
    finally:
        await consumer.stop()
    return seen


async def test_hand_offs_completed_together_are_marked_published_in_one_statement_and_a_failed_mark_is_kept(
    common_env: dict[str, Any], own_database: str
) -> None:
    # A database of its own and a relay that is not running: only the marks below touch the rows.
    settings = OrchestratorSettings(
        **{**common_env, "database_url": own_database, "topic_namespace": "marks"}
    )
    backbone = Backbone(settings, "marks")
    relay = backbone.relay
    batches = [
        [
            new_envelope(RunCancelRequested(run_id=uuid.uuid4(), source="user"), key=f"m{i}-{j}")
            for j in range(2)
        ]
        for i in range(3)
    ]
    async with backbone.sessions.begin() as session:
        await add_events(session, [PendingEvent(backbone.topics.run_commands, e) for b in batches for e in b])
    ids = [e.event_id for b in batches for e in b]

    def unmarked() -> Any:
        return select(func.count()).where(OutboxEvent.event_id.in_(ids), OutboxEvent.published_at.is_(None))

    acknowledged = datetime.now(UTC) - timedelta(seconds=3)

    class Down:
        def begin(self) -> Any:
            raise OSError("database down")

    try:
        sessions, relay._sessions = relay._sessions, Down()  # type: ignore[assignment]
        for batch in batches:  # three hand-offs complete while the database is down
            relay._mark_later([(e.event_id, acknowledged) for e in batch])
        with pytest.raises(OSError, match="database down"):
            await relay._mark_published()
        relay._sessions = sessions
        async with backbone.sessions() as session:
            assert await session.scalar(unmarked()) == len(ids)

        await relay._mark_published()  # back: all six in one statement

        assert relay._to_mark == []
        async with backbone.sessions() as session:
            assert await session.scalar(unmarked()) == 0
            marked = (
                await session.scalars(select(OutboxEvent.published_at).where(OutboxEvent.event_id.in_(ids)))
            ).all()
        assert set(marked) == {acknowledged}, "each row keeps the time Kafka acknowledged it"
    finally:
        await backbone.engine.dispose()


async def test_a_lingering_consumer_takes_what_arrives_soon_after_the_first_event_in_the_same_batch(
    backbone: Backbone,
) -> None:
    topic = backbone.topics.run_commands
    batches: list[list[uuid.UUID]] = []

    async def handler(batch: list[Received]) -> None:
        batches.append([r.envelope.event_id for r in batch])

    consumer = EventConsumer(
        name="linger-test",
        topics=[topic],
        group_id=f"{backbone.topics.namespace}.linger-test",
        bootstrap_servers=backbone.settings.kafka_bootstrap_servers,
        handler=handler,
        dead_letters=DeadLetterSink(backbone.sessions, backbone.topics, "linger-test"),
        linger_s=3.0,
    )
    sent = [new_envelope(RunCancelRequested(run_id=uuid.uuid4(), source="user"), key="k") for _ in range(4)]
    task = asyncio.create_task(consumer.run())
    try:
        await _until(consumer.started.is_set)
        await backbone.producer.send_many([OutgoingMessage(topic, b"k", sent[0].encode())])
        await asyncio.sleep(0.2)  # the first is being lingered on when the rest arrive
        await backbone.producer.send_many([OutgoingMessage(topic, b"k", e.encode()) for e in sent[1:]])
        await _until(lambda: sum(len(b) for b in batches) >= len(sent))
    finally:
        consumer.stop()
        await task
    assert batches == [[e.event_id for e in sent]]
