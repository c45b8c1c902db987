"""A stage's log as the API serves it: all stored chunks at once, or followed live (plain text or
Server-Sent Events) by polling `log_chunks` by sequence number until the stage is over.

Each poll uses its own short database session, so a client following a long stage holds no
connection between polls. Statuses are read before chunks in every poll: once an attempt is seen
finished, the chunks read after that include everything it ever wrote.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.repositories import run_views
from schemas.states import ATTEMPT_TERMINAL, STAGE_TERMINAL, AttemptStatus, StageStatus

POLL_S = 0.2
BATCH = 500
KEEPALIVE_S = 15.0
Format = Literal["text", "sse"]
# SSE ends a line at CR, LF or CRLF: each becomes a `data:` line break.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def sse_event(data: str, *, event: str | None = None, event_id: str | None = None) -> str:
    """One SSE frame; every line of `data` becomes its own `data:` line (the client rejoins them)."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event is not None:
        lines.append(f"event: {event}")
    lines.extend(f"data: {line}" for line in _LINE_BREAK.split(data))
    return "\n".join(lines) + "\n\n"


def parse_last_event_id(value: str | None) -> tuple[int, int] | None:
    """`Last-Event-ID: <attempt>:<seq>` from a reconnecting SSE client."""
    if not value:
        return None
    number, sep, seq = value.partition(":")
    if not sep or not number.isdigit() or not seq.isdigit() or len(value) > 40:
        return None
    return int(number), int(seq)


async def stored_log(sessions: async_sessionmaker[AsyncSession], attempt_id: uuid.UUID) -> AsyncIterator[str]:
    """Every chunk stored so far, in order."""
    seq = -1
    while True:
        async with sessions() as session:
            chunks = await run_views.log_chunks(session, attempt_id, after_seq=seq, limit=BATCH)
        for chunk in chunks:
            yield chunk.data
            seq = chunk.seq
        if len(chunks) < BATCH:
            return


@dataclass
class Follow:
    """Follow a stage's log live.

    `attempt` None follows the stage: its latest attempt, then each retry, until the stage ends.
    A given `attempt` is followed until that attempt ends.
    """

    sessions: async_sessionmaker[AsyncSession]
    stage_id: uuid.UUID
    attempt: int | None
    pinned: bool
    after_seq: int = -1
    fmt: Format = "text"
    poll_s: float = POLL_S

    async def stream(self) -> AsyncIterator[str]:
        number, seq = self.attempt, self.after_seq
        last_output = time.monotonic()
        stage_status: str | None = None
        announce = False
        while True:
            async with self.sessions() as session:
                stage_status = await run_views.stage_status(session, self.stage_id)
                attempt = await run_views.get_attempt(session, self.stage_id, number)
                attempt_status = None if attempt is None else attempt.status
                chunks = (
                    []
                    if attempt is None
                    else await run_views.log_chunks(session, attempt.id, after_seq=seq, limit=BATCH)
                )
            if attempt is not None and number != attempt.number:
                number = attempt.number  # the latest attempt, found: stay with it
            if attempt is not None and announce:
                announce = False
                yield self._marker(number or 0)
            for chunk in chunks:
                yield self._chunk(chunk.data, number or 0, chunk.seq)
                seq = chunk.seq
                last_output = time.monotonic()
            if len(chunks) == BATCH:
                continue
            stage_over = stage_status is None or StageStatus(stage_status) in STAGE_TERMINAL
            if attempt is None:
                if stage_over or self.pinned:
                    break
            elif attempt_status is not None and AttemptStatus(attempt_status) in ATTEMPT_TERMINAL:
                if self.pinned or stage_over:
                    break
                # The stage goes on: its next attempt (a retry) is what comes next.
                number, seq, announce = (number or 0) + 1, -1, True
            if self.fmt == "sse" and time.monotonic() - last_output > KEEPALIVE_S:
                yield ": keepalive\n\n"
                last_output = time.monotonic()
            await asyncio.sleep(self.poll_s)
        if self.fmt == "sse":
            end = {"stage_status": stage_status, "attempt": number}
            yield sse_event(orjson.dumps(end).decode(), event="end")

    def _chunk(self, data: str, number: int, seq: int) -> str:
        if self.fmt == "sse":
            return sse_event(data, event_id=f"{number}:{seq}")
        return data

    def _marker(self, number: int) -> str:
        if self.fmt == "sse":
            return sse_event(str(number), event="attempt")
        return f"\n[comet] attempt {number}\n"
