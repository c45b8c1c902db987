"""Log shipping for one attempt: output is decoded, masked (also across chunk boundaries),
buffered, and stored as numbered chunks every `flush_s` or 64 KiB, under the attempt's fencing
token. Past the per-stage cap, one clear truncation line is stored and the rest is dropped.

While the database is unreachable, output stays buffered (within the cap) and goes out with the
next flush that works: writing output never fails the stage."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterable

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.repositories.attempts import append_log
from workers.masking import IncrementalLogDecoder, SecretMasker

log = structlog.get_logger(__name__)
_CHUNK = 64 * 1024


class LogShipper:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        attempt_id: uuid.UUID,
        fencing_token: int,
        *,
        secrets: Iterable[str],
        flush_s: float,
        cap_bytes: int,
    ) -> None:
        self._sessions = sessions
        self._attempt = attempt_id
        self._token = fencing_token
        self._decoder = IncrementalLogDecoder()
        self._masker = SecretMasker(secrets)
        self._flush_s = flush_s
        self._cap = cap_bytes
        self._buffer: list[str] = []
        self._buffered = 0
        self._stored = 0
        self._seq = 0
        self._truncated = False
        self._lock = asyncio.Lock()
        self._ticker: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self.lease_lost = False

    def start(self) -> None:
        self._ticker = asyncio.create_task(self._tick())

    async def write(self, data: bytes) -> None:
        self._add(self._masker.feed(self._decoder.decode(data)))
        if self._buffered >= _CHUNK:
            await self.try_flush()

    async def note(self, line: str) -> None:
        """A line from Comet itself (checkout, timeout, cancellation), stored in order with the output."""
        self._add(self._masker.feed(self._decoder.decode(b"", final=True)) + self._masker.flush())
        self._add(f"\n[comet] {line}\n" if self._stored + self._buffered else f"[comet] {line}\n")
        await self.try_flush()

    async def try_flush(self) -> bool:
        """Flush, keeping the output for a later flush when the database cannot take it now."""
        try:
            await self.flush()
        except Exception as exc:
            log.warning(
                "log flush failed; output kept for the next flush",
                error=repr(exc),
                attempt_id=str(self._attempt),
            )
            return False
        return True

    def _add(self, text: str) -> None:
        if not text or self._truncated:
            return
        room = self._cap - self._stored - self._buffered
        if len(text.encode()) > room:
            text = text.encode()[: max(room, 0)].decode("utf-8", "ignore")
            self._truncated = True
            text += f"\n[comet] log truncated: this stage's log passed the {self._cap} byte cap\n"
        self._buffer.append(text)
        self._buffered += len(text.encode())

    async def flush(self) -> None:
        async with self._lock:
            if not self._buffer:
                return
            data, self._buffer, self._buffered = "".join(self._buffer), [], 0
            try:
                async with self._sessions.begin() as session:
                    stored = await append_log(
                        session, self._attempt, self._token, self._seq, data, truncated=self._truncated
                    )
            except Exception:
                self._buffer.insert(0, data)  # keep it for the next flush
                self._buffered += len(data.encode())
                raise
            if not stored:
                self.lease_lost = True
                return
            self._seq += 1
            self._stored += len(data.encode())

    async def close(self) -> None:
        """Stop shipping and flush what is left; output the database could not take stays buffered
        (`flush()` again before reporting the result)."""
        # Stop the ticker between flushes, never inside one: a flush cancelled after taking the
        # buffer would lose that chunk.
        self._closing.set()
        if self._ticker is not None:
            await self._ticker
        self._add(self._masker.feed(self._decoder.decode(b"", final=True)) + self._masker.flush())
        await self.try_flush()

    async def _tick(self) -> None:
        while not self._closing.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self._flush_s)
            await self.try_flush()
