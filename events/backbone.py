"""What every Comet process holds: the database engine and sessions, the producer, topic admin
and outbox relay. Built from settings at the entry point; started and stopped in one place."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from config.settings import CommonSettings
from db.engine import asyncpg_dsn, make_engine, make_sessionmaker
from events.admin import TopicAdmin
from events.producer import EventProducer
from events.relay import OutboxRelay
from events.topics import Topics


@dataclass
class Backbone:
    settings: CommonSettings
    process: str
    relay_enabled: bool = True
    engine: AsyncEngine = field(init=False)
    sessions: async_sessionmaker[AsyncSession] = field(init=False)
    topics: Topics = field(init=False)
    admin: TopicAdmin = field(init=False)
    producer: EventProducer = field(init=False)
    relay: OutboxRelay = field(init=False)
    _relay_task: asyncio.Task[None] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        s = self.settings
        self.engine = make_engine(s, application_name=f"comet-{self.process}")
        self.sessions = make_sessionmaker(self.engine)
        self.topics = Topics(s.topic_namespace)
        self.admin = TopicAdmin(s.kafka_bootstrap_servers, partitions=s.kafka_partitions)
        self.producer = EventProducer(s.kafka_bootstrap_servers, client_id=f"comet-{self.process}")
        self.relay = OutboxRelay(
            self.sessions, self.producer, self.admin, listen_dsn=asyncpg_dsn(s.database_url)
        )

    async def start_kafka(self) -> None:
        """Create the core topics and start the producer and relay (retries until Kafka answers)."""
        await self.admin.ensure(self.topics.core())
        await self.producer.start()
        if self.relay_enabled and self._relay_task is None:
            self._relay_task = asyncio.create_task(self.relay.run(), name="outbox-relay")

    def wake_relay(self) -> None:
        self.relay.wake()

    async def stop(self) -> None:
        if self._relay_task is not None:
            self.relay.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._relay_task, 10)
            self._relay_task = None
        await self.producer.stop()
        await self.engine.dispose()
