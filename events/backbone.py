"""What every Comet process holds: the database engine and sessions, the producer, topic admin
and outbox relay. Built from settings at the entry point; started and stopped in one place.

A process started while Postgres or Kafka is unreachable waits for them (saying so in one log
line, repeated when what it waits for changes) instead of exiting."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import structlog
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from config.settings import CommonSettings
from db.engine import asyncpg_dsn, make_engine, make_sessionmaker
from db.schema_version import REQUIRED, database_revision, too_old
from events.admin import TopicAdmin
from events.faults import is_transient
from events.health import HealthServer
from events.outbox import COMMITTED, HANDS_OFF
from events.partitions import partitions_of
from events.probe import kafka_answers
from events.producer import EventProducer
from events.relay import OutboxRelay
from events.topics import Topics

log = structlog.get_logger(__name__)


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
    # What /readyz of an orchestrator or worker says (see `events/health.py`).
    ready: bool = field(init=False, default=False)
    status: str = field(init=False, default="starting")
    _health: HealthServer | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        s = self.settings
        self.engine = make_engine(s, application_name=f"comet-{self.process}")
        self.sessions = make_sessionmaker(
            self.engine,
            after_commit=self._committed,
            after_rollback=self._rolled_back,
            info={HANDS_OFF: self._hands_off},
        )
        self.topics = Topics(s.topic_namespace)
        self.admin = TopicAdmin(
            s.kafka_bootstrap_servers,
            partitions=partitions_of(self.topics, s.kafka_partitions, s.kafka_topic_partitions),
            configs=self.topics.retention,
        )
        self.producer = EventProducer(s.kafka_bootstrap_servers, client_id=f"comet-{self.process}")
        self.relay = OutboxRelay(
            self.sessions, self.producer, self.admin, listen_dsn=asyncpg_dsn(s.database_url)
        )

    async def start(self, stop: asyncio.Event) -> bool:
        """Wait until Postgres and Kafka answer, then start the Kafka side. False when `stop` was
        set while waiting (the process should end)."""
        if self.settings.health_port is not None and self._health is None:
            self._health = HealthServer(self.settings.health_host, self.settings.health_port, self.readiness)
            await self._health.start()
        delay = 0.5
        said = ""
        while not stop.is_set():
            missing = await self.unreachable()
            if not missing:
                try:
                    await self.start_kafka()
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    missing = [f"Kafka at {self.settings.kafka_bootstrap_servers} ({exc!r})"]
                else:
                    if said:
                        log.info("services reachable; starting", process=self.process)
                    self.status = "services reachable"
                    return True
            line = f"waiting for {' and '.join(missing)}"
            self.status = line
            if line != said:
                log.warning(line, process=self.process, retry_every_s=5.0)
                said = line
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 5.0)
        return False

    def readiness(self) -> tuple[bool, str]:
        return self.ready, self.status

    def mark_ready(self, status: str) -> None:
        """The process is doing its work (its consumers joined their groups)."""
        self.ready, self.status = True, status

    async def unreachable(self) -> list[str]:
        """The services that do not answer right now, each described for a log line."""
        missing = []
        url = make_url(self.settings.database_url)
        where = f"{url.host}:{url.port or 5432}/{url.database}"
        try:
            async with asyncio.timeout(3.0), self.engine.connect() as connection:
                revision = await database_revision(connection)
        except Exception as exc:
            reason = getattr(exc, "orig", None) or exc
            missing.append(f"PostgreSQL at {where} ({reason})")
        else:
            if too_old(revision):
                missing.append(
                    f"the database at {where} to be migrated (it is at {revision or 'no migration'}, "
                    f"this Comet needs {REQUIRED}: run `comet migrate`)"
                )
        if not await kafka_answers(self.settings.kafka_bootstrap_servers, timeout_s=3.0):
            missing.append(f"Kafka at {self.settings.kafka_bootstrap_servers}")
        return missing

    async def start_kafka(self) -> None:
        """Create the core topics and start the producer and relay (retries until Kafka answers)."""
        await self.admin.ensure(self.topics.core())
        await self.producer.start()
        if self.relay_enabled and self._relay_task is None:
            self._relay_task = asyncio.create_task(self.relay.run(), name="outbox-relay")

    def _hands_off(self) -> bool:
        return self.relay_enabled and self.relay.hands_off

    def wake_relay(self) -> None:
        """This process committed outbox rows. Events written through `self.sessions` are already
        being handed to Kafka; the relay only needs waking when it does not hand off."""
        if not (self.relay_enabled and self.relay.hands_off):
            self.relay.wake()

    def _committed(self, session: Session) -> None:
        events = session.info.pop(COMMITTED, None)
        if events and self.relay_enabled:
            self.relay.publish_committed(events)

    @staticmethod
    def _rolled_back(session: Session) -> None:
        session.info.pop(COMMITTED, None)

    async def stop(self) -> None:
        self.ready, self.status = False, "stopping"
        if self._health is not None:
            await self._health.stop()
            self._health = None
        if self._relay_task is not None:
            self.relay.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._relay_task, 10)
            self._relay_task = None
        await self.producer.stop()
        await self.engine.dispose()
