"""The deployment timer (decision 0027): every `interval_s`, waiting deployments whose wait timer
ended or whose approvals are overdue get a `deployment.timer_fired` event carrying the time, for
`decide()` to weigh (it reads no clock). The event goes through the outbox like any run command; a
deployment fired for is not fired for again until the run's state has had time to move."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.repositories.deployments import due_timers
from events.envelope import new_envelope
from events.outbox import PendingEvent, add_events
from events.topics import Topics
from schemas.events import DeploymentTimerFired

log = structlog.get_logger(__name__)

REFIRE_AFTER_S = 30.0


class DeploymentTimer:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        topics: Topics,
        *,
        interval_s: float,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._sessions = sessions
        self._topics = topics
        self._interval = interval_s
        self._on_commit = on_commit
        self._fired: dict[uuid.UUID, float] = {}  # deployment -> monotonic time fired
        self._stopping = asyncio.Event()

    async def fire_once(self, now: datetime | None = None) -> int:
        at = now or datetime.now(UTC)
        clock = time.monotonic()
        self._fired = {k: v for k, v in self._fired.items() if clock - v < REFIRE_AFTER_S}
        async with self._sessions.begin() as session:
            due = [d for d in await due_timers(session, at) if d.id not in self._fired]
            events = [
                PendingEvent(
                    self._topics.run_commands,
                    new_envelope(
                        DeploymentTimerFired(run_id=d.run_id, deployment_id=d.id, at=at), key=str(d.run_id)
                    ),
                )
                for d in due
            ]
            if events:
                await add_events(session, events)
        for d in due:
            self._fired[d.id] = clock
        if events:
            self._on_commit()
        return len(events)

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.fire_once()
            except Exception as exc:  # the database may be away: try again next tick
                log.warning("deployment timer failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)

    def stop(self) -> None:
        self._stopping.set()
