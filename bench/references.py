"""The two reference figures every benchmark is compared with, measured in the same run.

- raw Kafka RTT: one message produced (idempotent, `acks=all`) and awaited until a consumer
  holds it, on a fresh one-partition topic, one message at a time.
- raw Postgres commit: `BEGIN; INSERT one row; COMMIT` on a plain asyncpg connection, one at a
  time. The row goes to a scratch table, not a TEMP one: transactions that only touch temporary
  tables write no WAL of their own, so PostgreSQL does not wait for a WAL flush at their commit
  and the figure would understate what a durable commit costs.

Neither goes through Comet's own code, so a ratio says how much Comet adds on top of its two
services. Scratch topics and tables get a random suffix and are removed afterwards.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.stats import Figure, Summary, summarize
from config.settings import CommonSettings
from db.engine import asyncpg_dsn

KAFKA_RTT = "raw Kafka RTT"
POSTGRES_COMMIT = "raw Postgres commit"
WARMUP = 20
_TIMEOUT_S = 15.0


class ReferenceUnavailableError(Exception):
    """A reference could not be measured (service unreachable or misbehaving). Not retriable here."""

    retriable = False


@dataclass(frozen=True, slots=True)
class Reference:
    """One reference: latencies in milliseconds, and what was measured (for the report)."""

    name: str
    latency_ms: Summary
    note: str = ""

    @property
    def p50(self) -> Figure:
        return Figure(f"{self.name} p50", self.latency_ms.p50, "ms")

    @property
    def p99(self) -> Figure:
        return Figure(f"{self.name} p99", self.latency_ms.p99, "ms")

    @property
    def rate(self) -> Figure:
        """Operations per second when done one after another (1000 / mean latency)."""
        return Figure(f"{self.name} sequential rate", 1000.0 / self.latency_ms.mean, "/s")

    def figures(self) -> list[Figure]:
        return [self.p50, self.p99, self.rate]


@dataclass(frozen=True, slots=True)
class References:
    kafka: Reference
    postgres: Reference

    def figures(self) -> list[Figure]:
        return self.kafka.figures() + self.postgres.figures()


async def measure_references(settings: CommonSettings, samples: int) -> References:
    """Both references, one after the other (measured apart so they do not disturb each other)."""
    kafka = await kafka_round_trip(settings, samples)
    postgres = await postgres_commit(settings, samples)
    return References(kafka=kafka, postgres=postgres)


# -- Kafka --------------------------------------------------------------------------------------


def scratch_topic(namespace: str) -> str:
    """A fresh topic for one measurement (bench-only, so not among the product's topics)."""
    return f"{namespace}.bench-ref-{secrets.token_hex(4)}"


async def kafka_round_trip(settings: CommonSettings, samples: int, *, warmup: int = WARMUP) -> Reference:
    """Produce→consume round trip of `samples` sequential messages on a fresh topic."""
    bootstrap = settings.kafka_bootstrap_servers
    topic = scratch_topic(settings.topic_namespace)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(_TIMEOUT_S * 1000))
    try:
        await asyncio.wait_for(admin.start(), _TIMEOUT_S)
    except Exception as exc:
        await admin.close()
        raise ReferenceUnavailableError(f"cannot reach Kafka at {bootstrap}: {exc!r}") from exc
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)], timeout_ms=int(_TIMEOUT_S * 1000))
        try:
            await _wait_for_leader(admin, topic)
            latencies = await _round_trips(bootstrap, topic, warmup + samples)
        finally:
            await admin.delete_topics([topic], timeout_ms=int(_TIMEOUT_S * 1000))
    finally:
        await admin.close()
    note = "idempotent producer, acks=all, linger 0; one partition; one message in flight"
    return Reference(KAFKA_RTT, summarize(latencies[warmup:]), note)


async def _wait_for_leader(admin: AIOKafkaAdminClient, topic: str) -> None:
    deadline = time.monotonic() + _TIMEOUT_S
    while time.monotonic() < deadline:
        described = await admin.describe_topics([topic])
        partitions = described[0].get("partitions") or []
        if described[0].get("error_code", 0) == 0 and partitions and partitions[0]["leader"] >= 0:
            return
        await asyncio.sleep(0.05)
    raise ReferenceUnavailableError(f"topic {topic} got no partition leader within {_TIMEOUT_S:.0f} s")


async def _round_trips(bootstrap: str, topic: str, count: int) -> list[float]:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id="comet-bench",
        enable_idempotence=True,
        acks="all",
        linger_ms=0,
    )
    # No consumer group: a group's join/rebalance is not part of a round trip.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="comet-bench",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await producer.start()
    try:
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, 0)])
            return [await _one_round_trip(producer, consumer, topic, i) for i in range(count)]
        finally:
            await consumer.stop()
    finally:
        await producer.stop()


async def _one_round_trip(
    producer: AIOKafkaProducer, consumer: AIOKafkaConsumer, topic: str, index: int
) -> float:
    payload = f"bench-{index}".encode()
    started = time.perf_counter()
    acked = await producer.send(topic, payload)
    try:
        async with asyncio.timeout(_TIMEOUT_S):
            while (await consumer.getone()).value != payload:
                pass
            await acked
    except TimeoutError:
        raise ReferenceUnavailableError(f"message {index} not consumed within {_TIMEOUT_S:.0f} s") from None
    return (time.perf_counter() - started) * 1000.0


# -- PostgreSQL -------------------------------------------------------------------------------


async def postgres_commit(settings: CommonSettings, samples: int, *, warmup: int = WARMUP) -> Reference:
    """`samples` sequential transactions, each inserting one row into a scratch table."""
    dsn = asyncpg_dsn(settings.database_url)
    try:
        conn = await asyncpg.connect(
            dsn, timeout=_TIMEOUT_S, server_settings={"application_name": "comet-bench"}
        )
    except Exception as exc:
        raise ReferenceUnavailableError(f"cannot reach PostgreSQL: {exc!r}") from exc
    table = f"bench_ref_{secrets.token_hex(4)}"  # ours, random hex: safe to put in SQL text
    try:
        durability = " ".join(
            [f"{name}={await conn.fetchval(f'SHOW {name}')}" for name in ("fsync", "synchronous_commit")]
        )
        await conn.execute(
            f"CREATE TABLE {table} (id bigserial PRIMARY KEY, payload text NOT NULL,"
            " at timestamptz NOT NULL DEFAULT clock_timestamp())"
        )
        try:
            insert = f"INSERT INTO {table} (payload) VALUES ($1)"  # noqa: S608 - table name is ours
            latencies = [await _one_commit(conn, insert, i) for i in range(warmup + samples)]
        finally:
            await conn.execute(f"DROP TABLE IF EXISTS {table}")
    finally:
        await conn.close()
    note = f"BEGIN; INSERT one row; COMMIT (asyncpg, {durability})"
    return Reference(POSTGRES_COMMIT, summarize(latencies[warmup:]), note)


async def _one_commit(conn: asyncpg.Connection, insert: str, index: int) -> float:
    started = time.perf_counter()
    async with conn.transaction():
        await conn.execute(insert, f"bench-{index}")
    return (time.perf_counter() - started) * 1000.0
