"""The idempotent producer every process publishes through.

`acks=all` with idempotence; every send is awaited with a timeout. After an ambiguous failure
(timeout, lost connection) the producer is recreated, because aiokafka's sequence numbers can
be stuck after one; the caller retries, and consumers' inboxes absorb any duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaProducer

log = structlog.get_logger(__name__)


class PublishError(Exception):
    """The broker did not acknowledge a batch in time. Retriable: the batch may or may not be in Kafka."""

    retriable = True


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    topic: str
    key: bytes
    value: bytes


class EventProducer:
    def __init__(
        self, bootstrap_servers: str, *, send_timeout_s: float = 10.0, client_id: str = "comet"
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._timeout = send_timeout_s
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        async with self._lock:
            if self._producer is None:
                self._producer = await self._new()

    async def _new(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=1,
            request_timeout_ms=int(self._timeout * 1000),
            compression_type=None,
        )
        try:
            await producer.start()
        except BaseException:
            # A producer that failed to start still holds a client; close it or it leaks.
            await self._close(producer)
            raise
        return producer

    async def stop(self) -> None:
        async with self._lock:
            if self._producer is not None:
                await self._close(self._producer)
                self._producer = None

    @staticmethod
    async def _close(producer: AIOKafkaProducer) -> None:
        try:
            await asyncio.wait_for(producer.stop(), 5)
        except Exception:
            # stop() waits to flush, which never ends while the broker is down; once it has been
            # cancelled it will not run again, so close what it would have closed.
            log.warning("producer did not stop cleanly; closing its connections")
            sender = getattr(producer, "_sender", None)
            with contextlib.suppress(Exception):
                if sender is not None:
                    await asyncio.wait_for(sender.close(), 2)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.client.close(), 2)

    async def send_many(
        self, messages: Sequence[OutgoingMessage], *, enqueued: asyncio.Event | None = None
    ) -> None:
        """Publish `messages` (in order per partition) and wait until all are acknowledged.
        `enqueued` is set once they are in the producer's queue (what a later send goes after),
        or when this fails: a caller ordering sends by it is never left waiting."""
        try:
            await self._send_many(messages, enqueued)
        finally:
            if enqueued is not None:
                enqueued.set()

    async def _send_many(self, messages: Sequence[OutgoingMessage], enqueued: asyncio.Event | None) -> None:
        if not messages:
            return
        if self._producer is None:
            await self.start()
        producer = self._producer
        assert producer is not None
        try:
            futures = [await producer.send(m.topic, m.value, key=m.key) for m in messages]
            if enqueued is not None:
                enqueued.set()
            await asyncio.wait_for(asyncio.gather(*futures), self._timeout)
        except BaseException as exc:
            # Cancelled too (the caller's deadline): a send cut short leaves the producer in doubt.
            log.warning("publish failed; recreating the producer", error=repr(exc))
            await self.discard(producer)
            if not isinstance(exc, Exception):
                raise
            raise PublishError(repr(exc)) from exc

    async def discard(self, producer: AIOKafkaProducer) -> None:
        """Close `producer` if it is still the current one; the next send starts a new one."""
        async with self._lock:
            if self._producer is producer:
                self._producer = None
                await self._close(producer)
