"""`comet analytics`: a faust-streaming app (docs/decisions/0025) that keeps each run's rows in a
changelog-backed table, derives its insight facts (events/analytics/facts.py) and writes the
changed ones to Postgres in one transaction per flush.

Off the critical path: nothing waits for it. Its consumer group and changelog topic are its own
(events/topics.py); stopped, it loses nothing — restarted, faust restores the table from the
changelog and resumes from the committed offsets, and every fact in the table is written once more
(idempotent upserts), so what was folded but not yet flushed before a stop reaches Postgres too.

Repair (decision 0030): faust can drop a message around a rebalance (its consumer skips offsets
below the position it read ahead to; faust-streaming issues #216, #221). A run that lost one waits
for it, finishes with an attempt still running, or never finishes in the table. So a run whose
events have waited `analytics_repair_after` for an earlier one, a run finished that long in the
table with an attempt still active, and a run Postgres says finished that long ago with no fact,
is folded again from its history in the outbox — the record the topics are published from.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any, cast

import faust
import orjson
import structlog
from aiokafka.errors import KafkaError
from faust.tables.manager import TableManager
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from config.settings import AnalyticsSettings
from db.engine import make_engine, make_sessionmaker
from db.projection import PROJECTED_TYPES, from_envelope
from db.repositories import insights
from events.admin import TopicAdmin
from events.analytics.facts import Fact, RunMirror
from events.envelope import UndecodableEventError, decode
from events.history import run_history
from events.partitions import partitions_of
from events.topics import Topics

log = structlog.get_logger(__name__)

# The sweep for finished runs with no fact runs this many `analytics_repair_after` apart (and looks
# at runs that finished at least that long ago): a backstop for the one loss nothing else shows, a
# run's last change.
SWEEP_FACTOR = 6

# The facts to write next: a fact, or None for one that no longer holds (deleted).
Pending = dict[tuple[str, str], Fact | None]


class Analytics:
    """The faust app, its run table, the facts waiting to be flushed, and counters for /metrics."""

    def __init__(self, settings: AnalyticsSettings) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_namespace)
        self.partitions = partitions_of(
            self.topics, settings.kafka_partitions, settings.kafka_topic_partitions
        )
        # The inputs share one count (events/partitions.py): the table's changelog gets it too.
        joined = self.partitions(self.topics.run_status)
        self.app = faust.App(
            self.topics.analytics_group,
            broker=[f"kafka://{hp.strip()}" for hp in settings.kafka_bootstrap_servers.split(",")],
            store="memory://",
            datadir=str(settings.analytics_data_dir),
            web_enabled=False,
            topic_partitions=joined,
            topic_replication_factor=1,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
        )
        self.source = self.app.topic(
            *self.topics.analytics_inputs(), key_serializer="raw", value_serializer="raw"
        )
        self.runs = self.app.Table(
            "runs",
            partitions=joined,
            key_type=bytes,  # raw bytes both ways: the run id, the mirror's JSON
            value_type=bytes,
            # A repaired run is written from the timer, outside any event: its changelog partition
            # is the key's, as the producers' partitioner puts the run's events (co-partitioned).
            use_partitioner=True,
        )
        self.pending: Pending = {}
        # Runs whose mirror has events waiting for an earlier one: since when (monotonic).
        self.stalled: dict[bytes, float] = {}
        self.repaired = 0
        # The sweep for finished runs with no fact starts a while after start-up: what the topics
        # bring is folded and written first, so the sweep finds only what they lost.
        self._swept = time.monotonic()
        self.consumed = 0
        self.flushed = 0
        self.last_flush = 0.0
        self._engine: AsyncEngine | None = None
        self._replayed = False
        self._lock = asyncio.Lock()
        self.app.agent(self.source, name="analytics.fold")(self._fold)
        self.app.timer(settings.analytics_flush_interval, name="analytics.flush")(self._flush_timer)

    # -- folding (the agent) -----------------------------------------------------------------------
    async def _fold(self, stream: Any) -> None:
        async for event in stream.events():
            self.consumed += 1
            self.fold_one(event.key, event.value)

    def fold_one(self, key: bytes | None, value: bytes | None) -> None:
        """Fold one message into its run's mirror and note which facts changed."""
        try:
            envelope = decode(value)
        except UndecodableEventError as exc:
            # The orchestrator dead-letters these; analytics only skips them.
            log.warning("analytics skipped an undecodable event", reason=str(exc))
            return
        if envelope.type not in PROJECTED_TYPES or not key:
            return
        mirror = RunMirror.load(self.runs.get(key))
        before = mirror.facts()
        if not mirror.apply(from_envelope(envelope)):
            return
        self._store(key, before, mirror)

    def _store(self, key: bytes, before: list[Fact], mirror: RunMirror) -> None:
        """Keep the run's mirror and note which of its facts changed (or no longer hold)."""
        self.runs[key] = mirror.dump()
        if mirror.waiting or not mirror.settled:
            self.stalled.setdefault(key, time.monotonic())
        else:
            self.stalled.pop(key, None)
        old = {f.key: f for f in before}
        after = {f.key: f for f in mirror.facts()}
        for fact_key in old.keys() - after.keys():
            self.pending[fact_key] = None
        for fact_key, fact in after.items():
            if old.get(fact_key) != fact:
                self.pending[fact_key] = fact

    # -- repair (the timer) ------------------------------------------------------------------------
    async def repair(self) -> int:
        """Fold again, from the outbox, the runs stalled for `analytics_repair_after` and those that
        finished that long ago with no fact; returns how many runs were repaired."""
        after_s = self.settings.analytics_repair_after
        now = time.monotonic()
        keys = {key for key, since in self.stalled.items() if now - since >= after_s}
        try:
            sweep_s = SWEEP_FACTOR * after_s
            if now - self._swept >= sweep_s:
                self._swept = now
                async with self.engine.connect() as conn:
                    missing = await insights.finished_without_fact(
                        conn, settled_s=sweep_s, within_s=max(3600.0, 10 * sweep_s)
                    )
                keys |= {str(run_id).encode() for run_id in missing}
            if not keys:
                return 0
            async with self.sessions() as session:
                histories = {key: await run_history(session, uuid.UUID(key.decode())) for key in keys}
        except Exception as exc:  # noqa: BLE001  (a database outage: try again on a later tick)
            log.warning("analytics could not read run histories to repair", error=str(exc), runs=len(keys))
            return 0
        for key, history in histories.items():
            before = RunMirror.load(self.runs.get(key)).facts()
            mirror = RunMirror()
            for event in history:
                with contextlib.suppress(UndecodableEventError):
                    mirror.apply(from_envelope(decode(orjson.dumps(event.envelope))))
            self._store(key, before, mirror)
            if mirror.waiting or not mirror.settled:
                # Its history is not whole (past retention): tried again when one of its events
                # comes, not on every tick.
                self.stalled.pop(key, None)
            log.info(
                "analytics folded a run again from its history",
                run_id=key.decode(),
                events=len(history),
                still_waiting=mirror.waiting,
            )
        self.repaired += len(histories)
        return len(histories)

    # -- writing (the timer) -----------------------------------------------------------------------
    async def _flush_timer(self) -> None:
        if not self._replayed:
            # After (re)start and table recovery, write every fact the table implies once: what a
            # previous run folded but had not flushed when it stopped is written now.
            recovery = cast(TableManager, self.app.tables).recovery
            if not recovery.completed.is_set():
                return
            for _key, value in list(self.runs.items()):
                for fact in RunMirror.load(value).facts():
                    self.pending.setdefault(fact.key, fact)
            self._replayed = True
        await self.repair()
        await self.flush()

    async def flush(self) -> int:
        """Write the pending facts in one transaction; they stay pending if Postgres fails."""
        async with self._lock:
            if not self.pending:
                return 0
            batch, self.pending = self.pending, {}
            try:
                async with self.engine.begin() as conn:
                    await insights.upsert(conn, [f.row() for f in batch.values() if f is not None])
                    await insights.delete(conn, [k for k, f in batch.items() if f is None])
            except Exception as exc:  # noqa: BLE001  (a database outage: keep them, try again)
                for key, fact in batch.items():
                    self.pending.setdefault(key, fact)
                log.warning("analytics could not write facts; retrying", error=str(exc), facts=len(batch))
                return 0
            self.flushed += len(batch)
            self.last_flush = time.monotonic()
            return len(batch)

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            self._engine = make_engine(self.settings, application_name="comet-analytics")
        return self._engine

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        return make_sessionmaker(self.engine)

    # -- life cycle --------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, then drain: stop consuming, write what is pending, leave the
        group (faust commits the offsets of what it processed)."""
        admin = TopicAdmin(
            self.settings.kafka_bootstrap_servers,
            partitions=self.partitions,
            configs=self.topics.retention,
        )
        while True:  # like the other processes, wait for Kafka rather than exit
            try:
                await admin.ensure(self.topics.analytics_inputs())
                break
            except (KafkaError, OSError) as exc:
                log.warning("analytics waits for Kafka", error=str(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 2.0)
                if stop.is_set():
                    return
        log.info(
            "analytics starting", group=self.topics.analytics_group, topics=self.topics.analytics_inputs()
        )
        # faust creates only the last directory of its datadir: `.comet/analytics` (relative to the
        # working directory) failed to start anywhere without a `.comet` directory.
        self.settings.analytics_data_dir.mkdir(parents=True, exist_ok=True)
        await self.app.start()
        try:
            await stop.wait()
        finally:
            log.info("analytics draining")
            await self.app.stop()
            await self.flush()
            if self._engine is not None:
                await self._engine.dispose()
            log.info("analytics stopped", consumed=self.consumed, flushed=self.flushed)
