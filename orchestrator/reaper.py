"""The lease reaper and retry timer: attempts whose worker stopped renewing the lease are marked
lost (their fencing token no longer admits a result) and reported as finished with
`lost_worker`, so `decide()` retries them as new attempts or fails the stage; retries whose
backoff has passed are handed to their pool's workers.

Leases are not judged for `outage_grace_s` after Postgres started, or after the reaper reached it
again following a failure: a database outage stops every heartbeat, and the workers' leases
(and the results they hold) deserve their first heartbeat after it before anyone is declared lost."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import projection
from db.repositories.attempts import database_started_within, due_retries, expired_leases
from db.repositories.run_state import notify_dispatch
from events.envelope import new_envelope
from events.outbox import PendingEvent, add_events
from events.topics import Topics
from schemas.events import AttemptDispatched, AttemptFinished
from schemas.states import AttemptStatus, FailureKind

log = structlog.get_logger(__name__)


class LeaseReaper:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        topics: Topics,
        *,
        interval_s: float,
        outage_grace_s: float = 10.0,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._sessions = sessions
        self._topics = topics
        self._interval = interval_s
        self._on_commit = on_commit
        self._grace = outage_grace_s
        self._grace_until = 0.0  # monotonic; set when the database answers again after a failure
        self._stopping = asyncio.Event()
        self.reaped = 0

    async def reap_once(self) -> int:
        async with self._sessions.begin() as session:
            judging = time.monotonic() >= self._grace_until and not await database_started_within(
                session, self._grace
            )
            lost = await expired_leases(session) if judging else []
            events = [
                PendingEvent(
                    self._topics.stage_results,
                    new_envelope(
                        AttemptFinished(
                            run_id=a.run_id,
                            stage_id=a.stage_id,
                            attempt_id=a.attempt_id,
                            stage=a.stage,
                            number=a.number,
                            status=AttemptStatus.LOST.value,
                            failure_kind=FailureKind.LOST_WORKER.value,
                            failure_reason=a.reason,
                            worker_id=a.worker_id,
                            started_at=a.started_at,
                            finished_at=a.finished_at,
                        ),
                        key=str(a.run_id),
                    ),
                )
                for a in lost
            ]
            due = await due_retries(session)
            await notify_dispatch(session, {d.pool for d in due})
            events += [
                PendingEvent(
                    self._topics.dispatch(d.pool),
                    new_envelope(
                        AttemptDispatched(
                            run_id=d.run_id,
                            stage_id=d.stage_id,
                            attempt_id=d.attempt_id,
                            stage=d.stage,
                            number=d.number,
                            pool=d.pool,
                        ),
                        key=str(d.run_id),
                    ),
                )
                for d in due
            ]
            # Lost attempts and ended backoffs are written as the projection of these events.
            await projection.apply_envelopes(await session.connection(), [e.envelope for e in events])
            await add_events(session, events)
        for a in lost:
            log.warning(
                "lease expired; attempt lost",
                run_id=str(a.run_id),
                stage=a.stage,
                attempt=a.number,
                worker_id=a.worker_id,
            )
        if lost or due:
            self.reaped += len(lost)
            self._on_commit()
        return len(lost)

    async def run(self) -> None:
        failing = False
        while not self._stopping.is_set():
            try:
                if failing:
                    self._grace_until = time.monotonic() + self._grace
                await self.reap_once()
                failing = False
            except Exception as exc:
                failing = True
                log.warning("lease reaper failed; retrying", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)

    def stop(self) -> None:
        self._stopping.set()
