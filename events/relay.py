"""The outbox relay: publishes committed outbox rows to Kafka and marks them published.

Woken by `LISTEN comet_outbox` (a trigger notifies on every insert, delivered at commit), by
`wake()` from its own process right after a commit, and by a slow sweep as a safety net. Rows are
taken with `FOR UPDATE SKIP LOCKED`, so relays in several processes share the work without
publishing a row twice; a crash between publish and mark publishes it again, and consumers'
inboxes make that harmless.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import orjson
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from events.admin import TopicAdmin
from events.listen import listen_forever
from events.producer import EventProducer, OutgoingMessage, PublishError

log = structlog.get_logger(__name__)

_TAKE = text(
    "SELECT id, topic, key, envelope FROM outbox WHERE published_at IS NULL "
    "ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED"
)
NOTIFY_GRACE_S = 0.05
_MARK = text("UPDATE outbox SET published_at = now() WHERE id = ANY(:ids)")


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
    ) -> None:
        self._sessions = sessions
        self._producer = producer
        self._admin = admin
        self._dsn = listen_dsn
        self._batch = batch_size
        self._sweep_s = sweep_s
        self._wake = asyncio.Event()
        # Woken by another process's NOTIFY: that process's own relay usually takes its rows at
        # once, so wait a moment before competing for them.
        self._notified = asyncio.Event()
        self._stopping = False
        self.published = 0

    def wake(self) -> None:
        """This process committed outbox rows: publish them now."""
        self._wake.set()

    def _on_notify(self) -> None:
        self._notified.set()

    async def drain(self) -> int:
        """Publish every unpublished row; returns how many were published."""
        total = 0
        while True:
            n = await self._publish_batch()
            total += n
            if n < self._batch:
                return total

    async def _publish_batch(self) -> int:
        async with self._sessions.begin() as session:
            rows = (await session.execute(_TAKE, {"limit": self._batch})).all()
            if not rows:
                return 0
            await self._admin.ensure(sorted({r.topic for r in rows}))
            await self._producer.send_many(
                [OutgoingMessage(r.topic, r.key.encode(), orjson.dumps(r.envelope)) for r in rows]
            )
            await session.execute(_MARK, {"ids": [r.id for r in rows]})
        self.published += len(rows)
        return len(rows)

    async def run(self) -> None:
        """Publish until `stop()`; survives Kafka and Postgres outages by retrying with backoff."""
        listener = asyncio.create_task(self._listen()) if self._dsn else None
        backoff = 0.1
        try:
            while not self._stopping:
                await self._next_wake()
                try:
                    await self.drain()
                    backoff = 0.1
                except (PublishError, OSError, asyncpg.PostgresError, Exception) as exc:
                    log.warning(
                        "outbox relay could not publish; will retry", error=repr(exc), retry_in_s=backoff
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    self._wake.set()
        finally:
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
