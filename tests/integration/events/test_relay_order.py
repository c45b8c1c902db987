"""Relays in several processes publish one key's events in the order they were written: a relay
holds back a row while an earlier row of its key is held by another relay (which may be retrying
it through a broker outage), and publishes it once that one is out."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from config.settings import OrchestratorSettings
from db.engine import make_engine, make_sessionmaker
from events.admin import TopicAdmin
from events.envelope import Envelope, decode, new_envelope
from events.outbox import PendingEvent, add_events
from events.producer import EventProducer, OutgoingMessage
from events.relay import OutboxRelay
from events.topics import Topics
from schemas.events import RunCancelRequested
from tests.integration.conftest import KAFKA

pytestmark = pytest.mark.integration


class GatedProducer(EventProducer):
    """A real producer whose sends wait at a gate: a relay stuck mid-publish, as in an outage."""

    def __init__(self, bootstrap_servers: str) -> None:
        super().__init__(bootstrap_servers)
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def send_many(
        self, messages: Sequence[OutgoingMessage], *, enqueued: asyncio.Event | None = None
    ) -> None:
        self.waiting.set()
        await self.gate.wait()
        await super().send_many(messages, enqueued=enqueued)


class SlowFirstTopicAdmin(TopicAdmin):
    """Topic creation that takes a moment the first time (a new topic), then none."""

    def __init__(self) -> None:
        super().__init__(KAFKA, partitions=1)
        self.calls = 0

    async def ensure(self, topics: list[str]) -> None:
        self.calls += 1
        if self.calls == 1:
            await asyncio.sleep(0.5)
        await super().ensure(topics)


async def test_one_processs_committed_events_reach_kafka_in_commit_order_even_when_the_first_waits(
    common_env: dict[str, Any], own_database: str
) -> None:
    """Handed straight to the producer after each commit, a later commit's events do not overtake
    an earlier one's that waits for its topic (seen: a run's `run.changed` events out of order)."""
    settings = OrchestratorSettings(**{**common_env, "database_url": own_database})
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    topic = Topics(f"ro{secrets.token_hex(4)}").run_status
    producer = EventProducer(KAFKA)
    relay = OutboxRelay(sessions, producer, SlowFirstTopicAdmin(), listen_dsn=None, sweep_s=60.0)
    run_id = uuid.uuid4()
    written = [
        new_envelope(RunCancelRequested(run_id=run_id, source="user", reason=f"r{i}"), key=str(run_id))
        for i in range(5)
    ]
    running = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.1)
        assert relay.hands_off
        for envelope in written:  # five commits, each handed off on its own
            events = [PendingEvent(topic, envelope)]
            async with sessions.begin() as session:
                await add_events(session, events)
            relay.publish_committed(events)
        order = await _read(topic, expected=5)
    finally:
        relay.stop()
        await running
        await producer.stop()
        await engine.dispose()

    assert [e.event_id for e in order] == [e.event_id for e in written]


async def test_a_relay_holds_back_a_keys_later_rows_while_another_relay_publishes_an_earlier_one(
    common_env: dict[str, Any], own_database: str
) -> None:
    settings = OrchestratorSettings(**{**common_env, "database_url": own_database})
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    topic = Topics(f"ro{secrets.token_hex(4)}").run_commands
    admin = TopicAdmin(KAFKA, partitions=1)
    stuck_producer, free_producer = GatedProducer(KAFKA), EventProducer(KAFKA)
    stuck = OutboxRelay(sessions, stuck_producer, admin, listen_dsn=None, batch_size=1)
    free = OutboxRelay(sessions, free_producer, admin, listen_dsn=None)
    run_k, run_l = uuid.uuid4(), uuid.uuid4()
    written = [
        new_envelope(RunCancelRequested(run_id=run_k, source="user", reason=f"k{i}"), key=str(run_k))
        for i in range(3)
    ]
    other = new_envelope(RunCancelRequested(run_id=run_l, source="user", reason="l0"), key=str(run_l))
    async with sessions.begin() as session:
        await add_events(session, [PendingEvent(topic, e) for e in [*written, other]])
    try:
        first = asyncio.create_task(stuck.drain())  # takes k0 and waits at the gate holding it
        await asyncio.wait_for(stuck_producer.waiting.wait(), 30)

        published_meanwhile = await free.drain()
        stuck_producer.gate.set()
        await asyncio.wait_for(first, 30)
        await free.drain()
        order = await _read(topic, expected=4)
    finally:
        await stuck_producer.stop()
        await free_producer.stop()
        await engine.dispose()

    assert published_meanwhile == 1, "only the other key's row could go while k0 was held"
    assert free.held_back == 2
    assert [e.event_id for e in order if e.key == str(run_k)] == [e.event_id for e in written]
    assert {e.event_id for e in order if e.key == str(run_l)} == {other.event_id}


async def test_a_relay_stuck_publishing_gives_its_rows_up_at_its_deadline_for_another_to_publish(
    common_env: dict[str, Any], own_database: str
) -> None:
    """aiokafka can wait without end while the broker restarts; the rows a stuck relay locked would
    stay locked and every other relay skips locked rows (seen in CI: a run's request never went)."""
    settings = OrchestratorSettings(**{**common_env, "database_url": own_database})
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    topic = Topics(f"ro{secrets.token_hex(4)}").run_commands
    admin = TopicAdmin(KAFKA, partitions=1)
    hung_producer, free_producer = GatedProducer(KAFKA), EventProducer(KAFKA)  # its gate never opens
    hung = OutboxRelay(sessions, hung_producer, admin, listen_dsn=None, publish_timeout_s=1.0)
    free = OutboxRelay(sessions, free_producer, admin, listen_dsn=None)
    run_id = uuid.uuid4()
    envelope = new_envelope(RunCancelRequested(run_id=run_id, source="user"), key=str(run_id))
    async with sessions.begin() as session:
        await add_events(session, [PendingEvent(topic, envelope)])
    try:
        first = asyncio.create_task(hung.drain())
        await asyncio.wait_for(hung_producer.waiting.wait(), 30)
        published_while_locked = await free.drain()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(first, 10)
        published_after = await free.drain()
        order = await _read(topic, expected=1)
    finally:
        await hung_producer.stop()
        await free_producer.stop()
        await engine.dispose()

    assert (published_while_locked, published_after) == (0, 1)
    assert [e.event_id for e in order] == [envelope.event_id]


async def _read(topic: str, *, expected: int) -> list[Envelope]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=KAFKA, auto_offset_reset="earliest")
    await consumer.start()
    seen: list[Envelope] = []
    try:
        async with asyncio.timeout(30):
            while len(seen) < expected:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    seen += [decode(r.value) for r in records]
    finally:
        await consumer.stop()
    return seen
