"""The outbox relay: publishes committed outbox rows to Kafka and marks them published.

Events a transaction of this process commits are handed straight to the producer
(`publish_committed`, from the backbone's sessions) and their rows marked published — by one
UPDATE for all the hand-offs that completed meanwhile, not one each: no round trip through the
table on the hot path. The relay itself publishes the rest: woken by `LISTEN
comet_outbox` (a trigger notifies, at commit, for inserted rows nobody hands off: migration 0012),
by `wake()`, and by a slow sweep as a safety net. Rows are
taken with `FOR UPDATE SKIP LOCKED`, so relays in several processes share the work without
publishing a row twice; a crash between publish and mark publishes it again, and consumers'
inboxes make that harmless.

One key's events (one run's) are published in the order they were written, across relays: a relay
holds back any row of a key that has an earlier unpublished row it did not take (another relay
is publishing it, perhaps retrying through a broker outage), and tries again a moment later.
Consumers do not depend on this order (docs/decisions/0012); it keeps the log readable and the
decisions' notes few.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import structlog
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from events.admin import TopicAdmin
from events.listen import listen_forever
from events.outbox import PendingEvent
from events.producer import EventProducer, OutgoingMessage, PublishError

log = structlog.get_logger(__name__)

# Rows another process is handing to Kafka itself are left to it for a moment (`handoff_until`).
_TAKE = text(
    "SELECT id, topic, key, envelope FROM outbox WHERE published_at IS NULL "
    "AND (handoff_until IS NULL OR handoff_until < now()) "
    "ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED"
)
# The first unpublished row of each of these keys that this relay did not take.
_EARLIER = text(
    "SELECT key, min(id) AS first FROM outbox WHERE published_at IS NULL AND key = ANY(:keys) "
    "AND id < :last AND id <> ALL(:ids) GROUP BY key"
)
NOTIFY_GRACE_S = 0.05
# The longest one publish (topic check, sends, acknowledgements) may take: past it the attempt is
# abandoned — the relay's rows unlocked for any relay, a hand-off's left to the relays. aiokafka can
# wait without end (a producer starting while the broker restarts): the rows it locked would stay
# locked, and every other relay skips locked rows (seen: a run's request never published).
PUBLISH_TIMEOUT_S = 45.0
HELD_BACK_RETRY_S = 0.02
# Handed-off events waiting to be marked published, at most (a long database outage): past it they
# are not queued, and are published again once their hand-off window has passed.
MARK_QUEUE_MAX = 50_000
# How long the marker gathers hand-offs before one UPDATE marks them all. Far inside the hand-off
# window (HANDOFF_GRACE), and off every event's way to its consumers.
MARK_DELAY_S = 0.05
_MARK = text("UPDATE outbox SET published_at = now() WHERE id = ANY(:ids)")
# Each row gets the time its publication was acknowledged (marks are made a moment later).
_MARK_EVENTS = text(
    "UPDATE outbox o SET published_at = m.at "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:ats AS timestamptz[])) AS m(id, at) "
    "WHERE o.event_id = m.id AND o.published_at IS NULL"
)
_ASYNC_COMMIT = text("SET LOCAL synchronous_commit = off")
_RELEASE_EVENTS = text(
    "UPDATE outbox SET handoff_until = NULL WHERE event_id = ANY(:ids) AND published_at IS NULL"
)


class OutboxRelay:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        producer: EventProducer,
        admin: TopicAdmin,
        *,
        listen_dsn: str | None,
        batch_size: int = 500,
        sweep_s: float = 1.0,
        publish_timeout_s: float = PUBLISH_TIMEOUT_S,
    ) -> None:
        self._sessions = sessions
        self._producer = producer
        self._admin = admin
        self._dsn = listen_dsn
        self._batch = batch_size
        self._sweep_s = sweep_s
        self._publish_timeout_s = publish_timeout_s
        self._wake = asyncio.Event()
        # Woken by another process's NOTIFY: that process's own relay usually takes its rows at
        # once, so wait a moment before competing for them.
        self._notified = asyncio.Event()
        self._stopping = False
        self.published = 0
        self.held_back = 0
        self._holding = False
        self._running = False
        self._handoffs: set[asyncio.Task[None]] = set()
        self._to_mark: list[tuple[uuid.UUID, datetime]] = []
        self._mark_wanted = asyncio.Event()
        self._last_enqueued: asyncio.Event | None = None

    def wake(self) -> None:
        """This process committed outbox rows: publish them now."""
        self._wake.set()

    @property
    def hands_off(self) -> bool:
        """Whether committed events are handed straight to the producer (the relay is running)."""
        return self._running and not self._stopping

    def publish_committed(self, events: Sequence[PendingEvent]) -> None:
        """Publish the events a transaction of this process just committed, without a round trip
        through the outbox table; what fails is left to the relay (woken to take it)."""
        if not events:
            return
        if not self.hands_off:
            self._wake.set()
            return
        # Each hand-off queues its messages after the one before it did (not after its
        # acknowledgement): one process's commits reach Kafka in their order. Concurrent hand-offs
        # could overtake each other, e.g. while the first waits for its topic to be created.
        previous, self._last_enqueued = self._last_enqueued, asyncio.Event()
        task = asyncio.get_running_loop().create_task(
            self._hand_off(list(events), previous, self._last_enqueued)
        )
        self._handoffs.add(task)
        task.add_done_callback(self._handoffs.discard)

    async def _hand_off(
        self, events: list[PendingEvent], previous: asyncio.Event | None, enqueued: asyncio.Event
    ) -> None:
        try:
            if previous is not None:
                await previous.wait()
            async with asyncio.timeout(self._publish_timeout_s):
                await self._admin.ensure(sorted({e.topic for e in events}))
                await self._producer.send_many(
                    [OutgoingMessage(e.topic, e.envelope.key.encode(), e.value()) for e in events],
                    enqueued=enqueued,
                )
            acknowledged = datetime.now(UTC)
            self._mark_later([(e.envelope.event_id, acknowledged) for e in events])
        except Exception as exc:
            log.info("hand-off to Kafka failed; the relay publishes from the outbox", error=repr(exc))
            with contextlib.suppress(Exception):  # else they wait out their hand-off grace
                async with self._sessions.begin() as session:
                    await session.execute(_RELEASE_EVENTS, {"ids": [e.envelope.event_id for e in events]})
            self._wake.set()
            return
        finally:
            enqueued.set()  # the next hand-off never waits on a failed one
        self.published += len(events)

    def _mark_later(self, published: list[tuple[uuid.UUID, datetime]]) -> None:
        """Queue handed-off events (with when Kafka acknowledged them) to be marked published by the
        marker: one UPDATE for the hand-offs of the last `MARK_DELAY_S` (a mark needs no hurry:
        relays leave the rows alone for the hand-off window, and a mark never made only publishes
        the row again)."""
        if len(self._to_mark) < MARK_QUEUE_MAX:
            self._to_mark.extend(published)
        self._mark_wanted.set()

    async def _mark_published(self) -> None:
        """Mark what is queued; on failure the ids stay queued for the next try."""
        marks, self._to_mark = self._to_mark, []
        if not marks:
            return
        try:
            async with self._sessions.begin() as session:
                # Not waited for on disk: a mark lost in a crash only publishes the row again,
                # which consumers' inboxes absorb.
                await session.execute(_ASYNC_COMMIT)
                await session.execute(
                    _MARK_EVENTS, {"ids": [i for i, _ in marks], "ats": [at for _, at in marks]}
                )
        except Exception as exc:
            log.info("could not mark handed-off events published yet", error=repr(exc), events=len(marks))
            self._to_mark[:0] = marks[: max(MARK_QUEUE_MAX - len(self._to_mark), 0)]
            raise

    async def _marker(self) -> None:
        backoff = 0.1
        while True:
            await self._mark_wanted.wait()
            self._mark_wanted.clear()
            await asyncio.sleep(MARK_DELAY_S)  # the hand-offs completing meanwhile join the batch
            try:
                await self._mark_published()
                backoff = 0.1
            except Exception:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                self._mark_wanted.set()

    def _on_notify(self) -> None:
        self._notified.set()

    async def drain(self) -> int:
        """Publish every unpublished row this relay may (see the module docstring); returns how many
        were published."""
        total = 0
        self._holding = False
        while True:
            taken, published = await self._publish_batch()
            total += published
            if taken < self._batch or published == 0:
                return total

    async def _publish_batch(self) -> tuple[int, int]:
        async with self._sessions.begin() as session:
            taken = (await session.execute(_TAKE, {"limit": self._batch})).all()
            if not taken:
                return 0, 0
            rows = await self._in_key_order(session, taken)
            if rows:
                async with asyncio.timeout(self._publish_timeout_s):
                    await self._admin.ensure(sorted({r.topic for r in rows}))
                    await self._producer.send_many(
                        [OutgoingMessage(r.topic, r.key.encode(), orjson.dumps(r.envelope)) for r in rows]
                    )
                await session.execute(_MARK, {"ids": [r.id for r in rows]})
        self.published += len(rows)
        return len(taken), len(rows)

    async def _in_key_order(self, session: AsyncSession, taken: Sequence[Row[Any]]) -> Sequence[Row[Any]]:
        """The taken rows minus those of a key with an earlier row this relay does not hold."""
        earlier = {
            r.key: r.first
            for r in await session.execute(
                _EARLIER,
                {"keys": list({r.key for r in taken}), "last": taken[-1].id, "ids": [r.id for r in taken]},
            )
        }
        if not earlier:
            return taken
        rows = [r for r in taken if r.key not in earlier or r.id < earlier[r.key]]
        self.held_back += len(taken) - len(rows)
        self._holding = True
        return rows

    async def run(self) -> None:
        """Publish until `stop()`; survives Kafka and Postgres outages by retrying with backoff."""
        listener = asyncio.create_task(self._listen()) if self._dsn else None
        marker = asyncio.create_task(self._marker(), name="outbox-marker")
        backoff = 0.1
        hold = HELD_BACK_RETRY_S
        self._running = True
        try:
            while not self._stopping:
                await self._next_wake()
                try:
                    published = await self.drain()
                    backoff = 0.1
                    if self._holding:  # another relay holds earlier rows of some key: retry soon
                        hold = HELD_BACK_RETRY_S if published else min(hold * 2, 1.0)
                        await asyncio.sleep(hold)
                        self._wake.set()
                except (PublishError, OSError, asyncpg.PostgresError, Exception) as exc:
                    log.warning(
                        "outbox relay could not publish; will retry", error=repr(exc), retry_in_s=backoff
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    self._wake.set()
        finally:
            self._running = False
            if self._handoffs:
                await asyncio.wait(set(self._handoffs), timeout=5)
            marker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await marker
            with contextlib.suppress(Exception):  # last marks; unmarked rows are published again
                async with asyncio.timeout(5):
                    await self._mark_published()
            if listener:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener

    async def _next_wake(self) -> None:
        """Until this process commits rows, another one notifies (then a short grace, so its own
        relay can publish them first), or the sweep interval passes."""
        own = asyncio.ensure_future(self._wake.wait())
        other = asyncio.ensure_future(self._notified.wait())
        try:
            done, _ = await asyncio.wait(
                {own, other}, timeout=self._sweep_s, return_when=asyncio.FIRST_COMPLETED
            )
            if other in done and own not in done:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), NOTIFY_GRACE_S)
        finally:
            own.cancel()
            other.cancel()
        self._wake.clear()
        self._notified.clear()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def _listen(self) -> None:
        """Every notification wakes the loop (after a grace); a (re)connect catches up at once."""
        assert self._dsn is not None
        await listen_forever(
            self._dsn,
            "comet_outbox",
            lambda _payload: self._on_notify(),
            on_connect=self._wake.set,
            keep_going=lambda: not self._stopping,
        )
