"""The scheduler: fires due schedules (pipeline `on.schedule` entries and test-suite schedules) as
runs, exactly once per tick.

Every `interval_s` it takes the due schedules one at a time (`next_fire_at <= now`, row-locked with
`SKIP LOCKED`, so several orchestrators share them and never wait on each other), and for each, in
ONE transaction: computes the tick to fire (`plan_fire`: the latest tick in `(last fired, now]` —
after downtime only the latest missed tick fires), inserts the unique `(schedule, tick)` row,
creates the run with its `run.requested` outbox event, and moves `next_fire_at` past `now`. A tick
whose row exists already (a replayed or raced state) creates no run. So two orchestrators, a
restart at any point or a replay never fire a tick twice.

The clock is an argument (a callable returning an aware datetime), so tests drive time. How cron
expressions, zones and daylight-saving changes map to ticks is `schemas/cron.py` (decision 0014).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.repositories import schedules
from db.repositories.runs import create_run
from events.topics import Topics
from schemas.cron import CronSchedule, ScheduleError, due_tick, next_fire

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class FirePlan:
    """What to do with a due schedule: fire `tick` (None: nothing to fire) and fire next at
    `next_fire_at` (None: never — `problem` says why)."""

    tick: datetime | None
    next_fire_at: datetime | None
    problem: str | None = None


def plan_fire(
    cron: str, timezone: str, *, since: datetime, next_fire_at: datetime | None, now: datetime
) -> FirePlan:
    """Pure: the tick a schedule fires at `now` and when it fires next.

    `since` is the last tick fired (or when the schedule was created): the tick is the latest one
    in `(since, now]`, so missed ticks collapse into the latest. It is never earlier than
    `next_fire_at`, the tick the schedule was waiting for: a schedule given a new cron or zone
    does not fire a tick of its new timetable that lies before its change.
    """
    try:
        schedule = CronSchedule(cron, timezone)
    except ScheduleError as exc:
        return FirePlan(None, None, str(exc))
    tick = due_tick(schedule, since=since, now=now)
    if tick is not None and next_fire_at is not None and tick < next_fire_at:
        tick = None
    return FirePlan(tick, next_fire(schedule, after=now))


def schedule_trigger(
    *,
    name: str,
    source: str,
    tick: datetime,
    suite_id: uuid.UUID | None,
    suite_name: str | None,
    suite_stages: list[str] | None,
) -> dict[str, Any]:
    """The trigger of a scheduled run; a suite's carries its stage selection (`stages`)."""
    trigger: dict[str, Any] = {
        "kind": "schedule",
        "schedule": name,
        "source": source,
        "tick": tick.astimezone(UTC).isoformat(),
    }
    if suite_id is not None:
        trigger |= {
            "suite_id": str(suite_id),
            "suite": suite_name or name,
            "stages": list(suite_stages or []),
        }
    return trigger


@dataclass(frozen=True, slots=True)
class Fired:
    """One due schedule handled: the tick fired (None: none due) and the run it created (None: no
    run — the tick had fired already, or the schedule cannot fire)."""

    schedule_id: uuid.UUID
    name: str
    tick: datetime | None
    run_id: uuid.UUID | None
    next_fire_at: datetime | None


class Scheduler:
    """Fires due schedules; one per orchestrator, any number of orchestrators."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        topics: Topics,
        *,
        clock: Clock = utc_now,
        interval_s: float = 1.0,
        batch: int = 100,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._sessions = sessions
        self._topics = topics
        self._clock = clock
        self._interval = interval_s
        self._batch = batch
        self._on_commit = on_commit
        self._stopping = asyncio.Event()
        self.runs_created = 0

    async def fire_due(self) -> list[Fired]:
        """Handle the schedules due at the clock's `now` (at most `batch` of them)."""
        now = self._clock()
        handled: list[Fired] = []
        for _ in range(self._batch):
            fired = await self._fire_one(now)
            if fired is None:
                break
            handled.append(fired)
        created = sum(1 for f in handled if f.run_id is not None)
        if created:
            self.runs_created += created
            self._on_commit()
        return handled

    async def _fire_one(self, now: datetime) -> Fired | None:
        async with self._sessions.begin() as session:
            due = await schedules.take_due(session, now)
            if due is None:
                return None
            row = due.schedule
            plan = plan_fire(
                row.cron,
                row.timezone,
                since=row.last_tick_at or row.created_at,
                next_fire_at=row.next_fire_at,
                now=now,
            )
            run_id = None
            if plan.tick is not None and await schedules.record_tick(session, row.id, plan.tick):
                trigger = schedule_trigger(
                    name=row.name,
                    source=row.source,
                    tick=plan.tick,
                    suite_id=row.suite_id,
                    suite_name=due.suite_name,
                    suite_stages=due.suite_stages,
                )
                run = await create_run(
                    session,
                    self._topics,
                    project_id=row.project_id,
                    ref=row.ref,
                    sha=None,
                    trigger=trigger,
                    variables=dict(row.variables),
                )
                await schedules.set_tick_run(session, row.id, plan.tick, run.id)
                run_id = run.id
            await schedules.advance(session, row, next_fire_at=plan.next_fire_at, last_tick_at=plan.tick)
            fired = Fired(row.id, row.name, plan.tick, run_id, plan.next_fire_at)
        context = {"schedule": fired.name, "schedule_id": str(fired.schedule_id)}
        if plan.problem is not None:
            log.error("schedule cannot fire; disabled until changed", problem=plan.problem, **context)
        elif run_id is not None:
            assert plan.tick is not None
            log.info("schedule fired", run_id=str(run_id), tick=plan.tick.isoformat(), **context)
        elif plan.tick is not None:
            log.info("tick fired already; no second run", tick=plan.tick.isoformat(), **context)
        return fired

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.fire_due()
            except Exception as exc:
                log.warning("scheduler failed; retrying", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)

    def stop(self) -> None:
        self._stopping.set()
