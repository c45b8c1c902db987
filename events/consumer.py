"""The consumer wrapper every Comet process reads Kafka through.

- Offsets are committed manually, only after the handler (whose database transaction records
  the events in the inbox) has returned: a crash before that redelivers, the inbox absorbs it.
- Undecodable messages go to the dead-letter sink with the reason; the consumer moves on.
- A handler failing for a transient reason (database or Kafka down, see `events/faults.py`) seeks
  back and retries the same batch with backoff, for as long as it takes.
- A handler failing otherwise (a poison event) is retried `poison_after` times; then the batch is
  handled one event at a time, and an event that still fails alone goes to the dead letters with
  the reason, so the partition moves on and every other run keeps going.
- The same event twice in one batch (a relay re-publishing after a crash) is handed over once.
- Offsets are committed when partitions are revoked, under the same lock as processing.
- `capacity()` lets a caller with limited slots (a worker) pause fetching instead of blocking
  the poll loop, so the group never sees it as dead during a long stage.
- A watchdog restarts a consumer that has lag but makes no progress (a known aiokafka failure
  after broker restarts).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from events.deadletters import BadRecord, DeadLetterSink
from events.envelope import Envelope, UndecodableEventError, decode
from events.faults import is_transient

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Received:
    envelope: Envelope
    topic: str
    partition: int
    offset: int


Handler = Callable[[list[Received]], Awaitable[None]]


class _Revocation(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: EventConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._owner.commit_pending()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._owner.note_progress()


class EventConsumer:
    def __init__(
        self,
        *,
        name: str,
        topics: list[str],
        group_id: str,
        bootstrap_servers: str,
        handler: Handler,
        dead_letters: DeadLetterSink,
        capacity: Callable[[], int] | None = None,
        max_batch: int = 500,
        watchdog_s: float = 60.0,
        auto_offset_reset: str = "earliest",
        poison_after: int = 3,
        instance_id: str | None = None,
        session_timeout_ms: int = 10000,
        linger_s: float = 0.0,
    ) -> None:
        self.name = name
        # After the first record of a batch arrives, gather what else comes within this long, so
        # a burst costs one handler call (and its transaction) instead of one each: a few ms for
        # the run engine, longer for consumers nobody waits on (notifications, commit statuses).
        self._linger_s = linger_s
        self._topics = topics
        self._group = group_id
        self._bootstrap = bootstrap_servers
        self._handler = handler
        self._dead = dead_letters
        self._capacity = capacity
        self._max_batch = max_batch
        self._watchdog_s = watchdog_s
        self._reset = auto_offset_reset
        self._poison_after = poison_after
        self._instance_id = instance_id
        self._session_timeout_ms = session_timeout_ms
        self._consumer: AIOKafkaConsumer | None = None
        self._pending: dict[TopicPartition, int] = {}
        # The last offset per partition handled (committed to Postgres) in the current poll.
        self._done: dict[TopicPartition, int] = {}
        self._lock = asyncio.Lock()
        self._stopping = False
        self._last_progress = time.monotonic()
        self._capacity_changed = asyncio.Event()
        self.started = asyncio.Event()
        # Set by the watchdog, acted on by the poll loop (which owns the consumer).
        self._restart_requested = False
        self.restarts = 0
        self.dead_lettered = 0

    def note_progress(self) -> None:
        self._last_progress = time.monotonic()

    def capacity_changed(self) -> None:
        """Tell a paused consumer that slots were freed."""
        self._capacity_changed.set()

    async def _start_consumer(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self._group,
            client_id=f"comet-{self.name}",
            enable_auto_commit=False,
            auto_offset_reset=self._reset,
            isolation_level="read_committed",
            max_poll_records=self._max_batch,
            fetch_max_wait_ms=100,
            # Static membership (see docs/decisions/0012): a restarted process with the same
            # instance id takes its partitions back at once, without a rebalance.
            group_instance_id=self._instance_id,
            session_timeout_ms=self._session_timeout_ms,
            heartbeat_interval_ms=1000,
            max_poll_interval_ms=300000,
        )
        consumer.subscribe(self._topics, listener=_Revocation(self))
        try:
            await consumer.start()
        except BaseException:
            # A consumer that failed to start still holds a client: close it or it leaks a
            # connection on every retry through a broker outage.
            await _close(consumer)
            raise
        return consumer

    async def commit_pending(self) -> None:
        async with self._lock:
            await self._commit_locked()

    async def _commit_locked(self) -> None:
        if not self._pending or self._consumer is None:
            return
        offsets = {tp: OffsetAndMetadata(off, "") for tp, off in self._pending.items()}
        try:
            await self._consumer.commit(offsets)
        except Exception as exc:
            log.warning(
                "offset commit failed; events will be redelivered", consumer=self.name, error=repr(exc)
            )
        self._pending.clear()

    async def run(self) -> None:
        """Consume until `stop()`. Survives broker outages (aiokafka reconnects) and handler errors."""
        watchdog = asyncio.create_task(self._watchdog())
        try:
            while not self._stopping:
                try:
                    self._consumer = await self._start_consumer()
                except Exception as exc:
                    log.warning("consumer could not start; retrying", consumer=self.name, error=repr(exc))
                    await asyncio.sleep(1.0)
                    continue
                self.started.set()
                self.note_progress()
                try:
                    await self._loop(self._consumer)
                except _RestartError:
                    self.restarts += 1
                    log.warning("consumer restarting (no progress despite lag)", consumer=self.name)
                finally:
                    consumer, self._consumer = self._consumer, None
                    await _close(consumer)
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog

    def stop(self) -> None:
        self._stopping = True
        self._capacity_changed.set()

    async def _gather_more(
        self,
        consumer: AIOKafkaConsumer,
        batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
        limit: int,
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        """`batches` plus what arrives within the linger, up to `limit` records in all."""
        room = limit - sum(len(recs) for recs in batches.values())
        if room <= 0:
            return batches
        await asyncio.sleep(self._linger_s)
        more = await consumer.getmany(timeout_ms=0, max_records=room)
        merged = {tp: list(recs) for tp, recs in batches.items()}
        for tp, recs in more.items():
            merged.setdefault(tp, []).extend(recs)
        return merged

    async def _loop(self, consumer: AIOKafkaConsumer) -> None:
        backoff = 0.1
        failures = 0  # consecutive non-transient failures of the handler
        while not self._stopping:
            if self._restart_requested:
                self._restart_requested = False
                raise _RestartError
            limit = self._max_batch
            if self._capacity is not None:
                limit = min(limit, self._capacity())
                if limit <= 0:
                    consumer.pause(*consumer.assignment())
                    self._capacity_changed.clear()
                    # Keep polling (with everything paused) so the group keeps us as a member.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._capacity_changed.wait(), 0.5)
                    await consumer.getmany(timeout_ms=0)
                    self.note_progress()
                    continue
                if consumer.paused():
                    consumer.resume(*consumer.paused())
            batches = await consumer.getmany(timeout_ms=200, max_records=limit)
            if not batches:
                if not await self._lagging(consumer):
                    self.note_progress()
                continue
            if self._linger_s > 0:
                batches = await self._gather_more(consumer, batches, limit)
            records = [r for tp in sorted(batches, key=lambda t: (t.topic, t.partition)) for r in batches[tp]]
            try:
                if failures >= self._poison_after:
                    await self._isolate(records)
                else:
                    await self._process(records)
                backoff, failures = 0.1, 0
            except Exception as exc:
                transient = is_transient(exc)
                failures = failures if transient else failures + 1
                log.warning(
                    "handler failed; retrying the batch",
                    consumer=self.name,
                    error=repr(exc),
                    transient=transient,
                    failures=failures,
                    retry_in_s=backoff,
                    # A failure that is not the infrastructure's is a bug meeting an event: its
                    # traceback, once, is what the person fixing it needs.
                    exc_info=exc if failures == 1 else None,
                )
                for tp, recs in batches.items():
                    done = self._done.get(tp, -1)
                    consumer.seek(tp, max(recs[0].offset, done + 1))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self._done.clear()

    async def _isolate(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Handle a batch that keeps failing one event at a time: the events that work are applied,
        one that fails `poison_after` times on its own goes to the dead letters with the reason.
        A transient failure is raised (the loop retries from the first event not yet handled)."""
        for record in records:
            for attempt in range(1, self._poison_after + 1):
                try:
                    await self._process([record])
                    break
                except Exception as exc:
                    if is_transient(exc):
                        raise
                    if attempt == self._poison_after:
                        await self._dead_letter(record, exc, attempt)
                    else:
                        await asyncio.sleep(0.1 * attempt)

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], exc: Exception, tries: int) -> None:
        reason = f"handler failed {tries} times: {exc!r}"[:2000]
        log.error(
            "poison event sent to dead letters; moving on",
            consumer=self.name,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error=repr(exc),
        )
        async with self._lock:
            await self._dead.record(
                [BadRecord(record.topic, record.partition, record.offset, record.key, record.value, reason)],
                kind="handler_failed",
            )
            tp = TopicPartition(record.topic, record.partition)
            self._pending[tp] = record.offset + 1
            self._done[tp] = record.offset
            await self._commit_locked()
        self.dead_lettered += 1
        self.note_progress()

    async def _process(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        good: list[Received] = []
        bad: list[BadRecord] = []
        seen: set[object] = set()
        for r in records:
            try:
                envelope = decode(r.value)
            except UndecodableEventError as exc:
                bad.append(BadRecord(r.topic, r.partition, r.offset, r.key, r.value, str(exc)))
                continue
            if envelope.event_id not in seen:
                seen.add(envelope.event_id)
                good.append(Received(envelope, r.topic, r.partition, r.offset))
        async with self._lock:
            if bad:
                log.warning("undecodable events sent to dead letters", consumer=self.name, count=len(bad))
                await self._dead.record(bad)
            if good:
                await self._handler(good)
            for r in records:
                tp = TopicPartition(r.topic, r.partition)
                self._pending[tp] = r.offset + 1
                self._done[tp] = r.offset
            await self._commit_locked()
        self.note_progress()

    async def _lagging(self, consumer: AIOKafkaConsumer) -> bool:
        """True when an assigned, unpaused partition has records we have not read."""
        paused = consumer.paused()
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if tp in paused or high is None:
                continue
            try:
                position = await asyncio.wait_for(consumer.position(tp), 0.5)
            except Exception as exc:  # an unknown position is not evidence of lag
                log.debug("position unknown", consumer=self.name, partition=str(tp), error=repr(exc))
                continue
            if position < high:
                return True
        return False

    async def _watchdog(self) -> None:
        while not self._stopping:
            await asyncio.sleep(max(self._watchdog_s / 4, 0.5))
            if self._consumer is not None and time.monotonic() - self._last_progress > self._watchdog_s:
                self._restart_requested = True
                self.note_progress()


class _RestartError(Exception):
    pass


async def _close(consumer: AIOKafkaConsumer) -> None:
    """Stop the consumer; if that hangs (a broker that went away mid-request), close its client so
    no connection is left open."""
    try:
        await asyncio.wait_for(consumer.stop(), 10)
    except Exception as exc:
        log.warning("consumer did not stop cleanly; closing its connections", error=repr(exc))
        with contextlib.suppress(Exception):
            await asyncio.wait_for(consumer._client.close(), 2)
