"""Schedules fire on the real PostgreSQL, driven by a controllable clock: exactly one run per tick
with two schedulers racing, a restart and a replayed state in between; only the latest missed tick
after downtime; Europe/Berlin across both daylight-saving changes exactly as `schemas/cron.py`
says; a suite's schedule carries its stage selection. `comet schedules` shows them all.

Each test has a database of its own (`own_database`): the session's platform orchestrator runs a
scheduler on the real clock, which must not fire these schedules.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from config.settings import OrchestratorSettings
from db.engine import make_engine, make_sessionmaker
from db.models import Run, Schedule, ScheduleTick
from db.repositories import test_suites
from events.topics import Topics
from orchestrator.scheduler import Scheduler
from schemas.cron import CronSchedule, next_fire
from tests.integration.helpers import add_project
from tests.integration.processes import COMET

pytestmark = pytest.mark.integration

TOPICS = Topics("sched")
BERLIN = ZoneInfo("Europe/Berlin")


def utc(text_: str) -> datetime:
    return datetime.fromisoformat(text_).replace(tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Databases:
    """Engines on the test's own database: each scheduler gets its own (its own connections)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engines: list[AsyncEngine] = []

    def sessions(self) -> async_sessionmaker[AsyncSession]:
        engine = make_engine(OrchestratorSettings(database_url=self.url, db_pool_size=3))
        self.engines.append(engine)
        return make_sessionmaker(engine)


@pytest.fixture
async def dbs(own_database: str) -> AsyncIterator[Databases]:
    databases = Databases(own_database)
    yield databases
    for engine in databases.engines:
        await engine.dispose()


async def _add_schedule(
    sessions: async_sessionmaker[AsyncSession],
    project_id: uuid.UUID,
    *,
    cron: str,
    timezone: str = "UTC",
    created_at: datetime,
    name: str | None = None,
) -> uuid.UUID:
    async with sessions.begin() as session:
        row = Schedule(
            project_id=project_id,
            source="pipeline",
            name=name or f"{cron} {timezone} {uuid.uuid4().hex[:6]}",
            cron=cron,
            timezone=timezone,
            ref="refs/heads/main",
            variables={},
            next_fire_at=next_fire(CronSchedule(cron, timezone), after=created_at),
            created_at=created_at,
            updated_at=created_at,
        )
        session.add(row)
        await session.flush()
        return row.id


async def _ticks(sessions: async_sessionmaker[AsyncSession], schedule_id: uuid.UUID) -> list[ScheduleTick]:
    async with sessions() as session:
        rows = await session.scalars(
            select(ScheduleTick).where(ScheduleTick.schedule_id == schedule_id).order_by(ScheduleTick.tick)
        )
        return list(rows)


async def _runs(sessions: async_sessionmaker[AsyncSession], project_id: uuid.UUID) -> list[Run]:
    async with sessions() as session:
        rows = await session.scalars(select(Run).where(Run.project_id == project_id).order_by(Run.number))
        return list(rows)


def _every(start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    out, at = [], start
    while at <= end:
        out.append(at)
        at += step
    return out


async def test_two_schedulers_racing_with_a_restart_and_a_replayed_state_fire_one_run_per_tick(
    dbs: Databases,
) -> None:
    setup = dbs.sessions()
    project_id = await add_project(setup, "/nowhere/repo.git")
    created = utc("2026-06-01 11:58")
    ids = [await _add_schedule(setup, project_id, cron="*/5 * * * *", created_at=created) for _ in range(8)]
    clock = Clock(created)
    first, other = (
        Scheduler(dbs.sessions(), TOPICS, clock=clock),
        Scheduler(dbs.sessions(), TOPICS, clock=clock),
    )
    schedulers = [first, other]

    for minute in _every(utc("2026-06-01 12:00"), utc("2026-06-01 13:00"), timedelta(minutes=1)):
        clock.now = minute + timedelta(seconds=1)
        if minute == utc("2026-06-01 12:30"):
            # A restart: the first scheduler is gone; a new instance (new connections) takes over.
            schedulers[0] = Scheduler(dbs.sessions(), TOPICS, clock=clock)
        if minute == utc("2026-06-01 12:27"):
            # A replayed (or restored) state: one schedule believes 12:25 has not fired yet.
            async with setup.begin() as session:
                await session.execute(
                    text("UPDATE schedules SET next_fire_at = :n, last_tick_at = :l WHERE id = :id"),
                    {"n": utc("2026-06-01 12:25"), "l": utc("2026-06-01 12:20"), "id": ids[0]},
                )
        await asyncio.gather(*(s.fire_due() for s in schedulers))

    expected = _every(utc("2026-06-01 12:00"), utc("2026-06-01 13:00"), timedelta(minutes=5))
    runs = await _runs(setup, project_id)
    assert len(runs) == len(ids) * len(expected)
    by_run = {run.id: run for run in runs}
    for schedule_id in ids:
        ticks = await _ticks(setup, schedule_id)
        assert [t.tick for t in ticks] == expected
        assert len({t.run_id for t in ticks}) == len(expected)
        for t in ticks:
            assert t.run_id is not None
            run = by_run[t.run_id]
            assert run.trigger["kind"] == "schedule"
            assert run.trigger["source"] == "pipeline"
            assert datetime.fromisoformat(run.trigger["tick"]) == t.tick
            assert run.status == "requested"
            assert run.ref == "refs/heads/main"
    restarted = schedulers[0]
    assert restarted is not first
    assert first.runs_created + restarted.runs_created + other.runs_created == len(runs)


async def test_after_downtime_only_the_latest_missed_tick_fires(dbs: Databases) -> None:
    sessions = dbs.sessions()
    project_id = await add_project(sessions, "/nowhere/repo.git")
    schedule_id = await _add_schedule(
        sessions, project_id, cron="*/10 * * * *", created_at=utc("2026-06-01 11:55")
    )
    clock = Clock(utc("2026-06-01 12:00:02"))
    scheduler = Scheduler(sessions, TOPICS, clock=clock)
    await scheduler.fire_due()

    clock.now = utc("2026-06-01 15:07")  # down for three hours: 18 ticks missed
    restarted = Scheduler(dbs.sessions(), TOPICS, clock=clock)
    fired = await restarted.fire_due()
    await restarted.fire_due()

    assert [t.tick for t in await _ticks(sessions, schedule_id)] == [
        utc("2026-06-01 12:00"),
        utc("2026-06-01 15:00"),
    ]
    assert len(await _runs(sessions, project_id)) == 2
    assert [(f.tick, f.next_fire_at) for f in fired] == [(utc("2026-06-01 15:00"), utc("2026-06-01 15:10"))]
    async with sessions() as session:
        row = await session.get(Schedule, schedule_id)
        assert row is not None
        assert row.last_tick_at == utc("2026-06-01 15:00")
        assert row.next_fire_at == utc("2026-06-01 15:10")


def _oracle(cron: str, zone: str, start: datetime, end: datetime) -> list[datetime]:
    """The ticks in (start, end] by schemas/cron.py."""
    ticks, at = [], start
    schedule = CronSchedule(cron, zone)
    while (at := next_fire(schedule, after=at)) <= end:
        ticks.append(at)
    return ticks


@pytest.mark.parametrize(
    ("start", "end", "daily", "local_day"),
    [
        # Spring forward (02:00 CET -> 03:00 CEST): 02:30 does not exist; it fires once, at the jump.
        ("2026-03-28 12:00", "2026-03-30 12:00", ["2026-03-29 01:00", "2026-03-30 00:30"], "2026-03-29"),
        # Fall back (03:00 CEST -> 02:00 CET): 02:30 happens twice and fires once, the first time.
        ("2026-10-24 12:00", "2026-10-26 12:00", ["2026-10-25 00:30", "2026-10-26 01:30"], "2026-10-25"),
    ],
    ids=["spring-forward", "fall-back"],
)
async def test_berlin_schedules_fire_across_a_daylight_saving_change_exactly_as_the_cron_module_says(
    dbs: Databases, start: str, end: str, daily: list[str], local_day: str
) -> None:
    sessions = dbs.sessions()
    project_id = await add_project(sessions, "/nowhere/repo.git")
    begin, finish = utc(start), utc(end)
    crons = {"daily": "30 2 * * *", "hourly": "0 * * * *", "quarterly": "*/15 * * * *"}
    ids = {
        label: await _add_schedule(
            sessions, project_id, cron=cron, timezone="Europe/Berlin", created_at=begin
        )
        for label, cron in crons.items()
    }
    clock = Clock(begin)
    schedulers = [Scheduler(sessions, TOPICS, clock=clock), Scheduler(dbs.sessions(), TOPICS, clock=clock)]
    for at in _every(begin, finish, timedelta(minutes=5)):
        clock.now = at
        await asyncio.gather(*(s.fire_due() for s in schedulers))

    fired = {label: [t.tick for t in await _ticks(sessions, ids[label])] for label in crons}
    for label, cron in crons.items():
        assert fired[label] == _oracle(cron, "Europe/Berlin", begin, finish), label
    assert fired["daily"] == [utc(t) for t in daily]
    # Every real hour of the local day fires: 23 on the spring day, 25 on the autumn one.
    berlin_day = [t for t in fired["hourly"] if t.astimezone(BERLIN).date().isoformat() == local_day]
    assert len(berlin_day) == (23 if local_day.endswith("03-29") else 25)
    assert len(set(fired["quarterly"])) == len(fired["quarterly"])
    assert len(await _runs(sessions, project_id)) == sum(len(v) for v in fired.values())


async def test_a_suite_schedule_fires_a_run_of_its_ref_with_its_stage_selection_and_variables(
    dbs: Databases,
) -> None:
    sessions = dbs.sessions()
    project_id = await add_project(sessions, "/nowhere/repo.git")
    created = utc("2026-06-01 11:00")
    async with sessions.begin() as session:
        suite, row = await test_suites.create_suite(
            session,
            project_id=project_id,
            name="nightly e2e",
            stages=["e2e*", "lint"],
            ref="refs/heads/release",
            variables={"SUITE": "nightly"},
            schedule=("0 3 * * *", "Europe/Berlin"),
            created_by=None,
            now=created,
        )
    assert row is not None
    assert row.next_fire_at == utc("2026-06-02 01:00")
    scheduler = Scheduler(sessions, TOPICS, clock=Clock(utc("2026-06-02 01:00:00.5")))
    await scheduler.fire_due()

    (run,) = await _runs(sessions, project_id)
    assert run.ref == "refs/heads/release"
    assert run.variables == {"SUITE": "nightly"}
    assert run.trigger == {
        "kind": "schedule",
        "schedule": "nightly e2e",
        "source": "test_suite",
        "tick": "2026-06-02T01:00:00+00:00",
        "suite_id": str(suite.id),
        "suite": "nightly e2e",
        "stages": ["e2e*", "lint"],
    }


def _comet(args: list[str], database_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    env |= {"COMET_DATABASE_URL": database_url, "COLUMNS": "250", "COMET_LOG_FORMAT": "console"}
    return subprocess.run([COMET, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


async def test_comet_schedules_lists_every_schedule_of_every_project_with_its_next_fire_time(
    dbs: Databases,
) -> None:
    sessions = dbs.sessions()
    alpha = await add_project(sessions, "/nowhere/a.git", name="alpha")
    beta = await add_project(sessions, "/nowhere/b.git", name="beta")
    now = datetime.now(UTC)
    await _add_schedule(
        sessions, alpha, cron="0 3 * * *", timezone="Europe/Berlin", created_at=now, name="nightly"
    )
    await _add_schedule(sessions, beta, cron="*/5 * * * *", created_at=now, name="often")

    shown = await asyncio.to_thread(_comet, ["schedules"], dbs.url)

    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    often = next(line for line in lines if "often" in line)
    nightly = next(line for line in lines if "nightly" in line)
    assert lines.index(often) < lines.index(nightly), "the next to fire comes first"
    assert "beta" in often
    assert "*/5 * * * *" in often
    assert "in " in often
    assert "alpha" in nightly
    assert "Europe/Berlin" in nightly
    expected = next_fire(CronSchedule("0 3 * * *", "Europe/Berlin"), after=now)
    assert expected.strftime("%Y-%m-%d %H:%M:%S") in nightly


async def test_comet_schedules_without_a_database_says_so_in_one_line() -> None:
    shown = await asyncio.to_thread(
        _comet, ["schedules"], "postgresql+asyncpg://comet:comet@127.0.0.1:1/comet"
    )
    assert shown.returncode == 1
    assert shown.stdout == ""
    assert shown.stderr.count("\n") == 1
    assert shown.stderr.startswith("comet: cannot read the schedules: the database is unreachable")
