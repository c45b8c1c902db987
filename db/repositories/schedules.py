"""Schedules and their fired ticks: taking the due ones (row locks, `SKIP LOCKED`, so several
orchestrators share them), recording a tick (unique per schedule), advancing `next_fire_at`;
keeping a project's pipeline schedules and a test suite's schedule in step with their source;
listing them. Functions work in the caller's transaction and never commit; times come in as
arguments (the caller owns the clock)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Project, Schedule, ScheduleTick, TestSuite

PIPELINE = "pipeline"
TEST_SUITE = "test_suite"


@dataclass(frozen=True, slots=True)
class DueSchedule:
    """A locked schedule whose `next_fire_at` has come, with its suite's selection (if any)."""

    schedule: Schedule
    suite_name: str | None
    suite_stages: list[str] | None


@dataclass(frozen=True, slots=True)
class DesiredSchedule:
    """One pipeline schedule as `.comet.yml` defines it, and when it would fire first."""

    name: str
    cron: str
    timezone: str
    ref: str
    next_fire_at: datetime | None


async def take_due(session: AsyncSession, now: datetime) -> DueSchedule | None:
    """The schedule due longest ago that no other transaction holds, locked until commit."""
    stmt = (
        select(Schedule, TestSuite.name, TestSuite.stages)
        .outerjoin(TestSuite, TestSuite.id == Schedule.suite_id)
        .where(Schedule.next_fire_at <= now)
        .order_by(Schedule.next_fire_at)
        .limit(1)
        .with_for_update(of=Schedule, skip_locked=True)
    )
    row = (await session.execute(stmt)).one_or_none()
    if row is None:
        return None
    return DueSchedule(row[0], row[1], None if row[2] is None else list(row[2]))


async def record_tick(session: AsyncSession, schedule_id: uuid.UUID, tick: datetime) -> bool:
    """Insert the `(schedule, tick)` row; False when that tick was fired already."""
    stmt = (
        pg_insert(ScheduleTick)
        .values(schedule_id=schedule_id, tick=tick)
        .on_conflict_do_nothing(index_elements=[ScheduleTick.schedule_id, ScheduleTick.tick])
        .returning(ScheduleTick.tick)
    )
    return (await session.execute(stmt)).first() is not None


async def set_tick_run(
    session: AsyncSession, schedule_id: uuid.UUID, tick: datetime, run_id: uuid.UUID
) -> None:
    await session.execute(
        update(ScheduleTick)
        .where(ScheduleTick.schedule_id == schedule_id, ScheduleTick.tick == tick)
        .values(run_id=run_id)
    )


async def advance(
    session: AsyncSession,
    schedule: Schedule,
    *,
    next_fire_at: datetime | None,
    last_tick_at: datetime | None,
) -> None:
    """Set when the schedule fires next (None: never, e.g. its cron became unusable) and, when a
    tick fired, which."""
    schedule.next_fire_at = next_fire_at
    if last_tick_at is not None:
        schedule.last_tick_at = last_tick_at
    await session.flush()


async def ticks_of(session: AsyncSession, schedule_id: uuid.UUID) -> list[ScheduleTick]:
    rows = await session.scalars(
        select(ScheduleTick).where(ScheduleTick.schedule_id == schedule_id).order_by(ScheduleTick.tick)
    )
    return list(rows)


# -- pipeline schedules ---------------------------------------------------------------------------
async def lock_project_schedules(session: AsyncSession, project_id: uuid.UUID) -> None:
    """Serialise changes to one project's pipeline schedules (two orchestrators syncing it)."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"comet.schedules.{project_id}"},
    )


async def replace_pipeline_schedules(
    session: AsyncSession, project_id: uuid.UUID, desired: Sequence[DesiredSchedule], now: datetime
) -> tuple[list[str], list[str]]:
    """Make the project's pipeline schedules exactly `desired`, by name: new names are inserted
    (created `now`, first firing at their `next_fire_at`), missing ones deleted, the rest kept as
    they are (their ticks and `next_fire_at` too). Returns (added, removed) names."""
    await lock_project_schedules(session, project_id)
    existing = {
        row.name: row
        for row in await session.scalars(
            select(Schedule).where(Schedule.project_id == project_id, Schedule.source == PIPELINE)
        )
    }
    wanted = {d.name: d for d in desired}
    removed = sorted(set(existing) - set(wanted))
    if removed:
        await session.execute(
            delete(Schedule).where(
                Schedule.project_id == project_id, Schedule.source == PIPELINE, Schedule.name.in_(removed)
            )
        )
    added = [name for name in wanted if name not in existing]
    for name in added:
        d = wanted[name]
        session.add(
            Schedule(
                project_id=project_id,
                source=PIPELINE,
                name=name,
                cron=d.cron,
                timezone=d.timezone,
                ref=d.ref,
                variables={},
                next_fire_at=d.next_fire_at,
                created_at=now,
                updated_at=now,
            )
        )
    await session.flush()
    return added, removed


# -- test suite schedules -------------------------------------------------------------------------
async def suite_schedule(session: AsyncSession, suite_id: uuid.UUID) -> Schedule | None:
    return await session.scalar(select(Schedule).where(Schedule.suite_id == suite_id))


async def put_suite_schedule(
    session: AsyncSession,
    suite: TestSuite,
    *,
    cron: str,
    timezone: str,
    next_fire_at: datetime | None,
    retimed: bool,
    now: datetime,
) -> Schedule:
    """Create or update the suite's schedule row (named like the suite, running its ref with its
    variables). `retimed` (a new cron or zone) moves `next_fire_at`; otherwise it is kept."""
    row = await suite_schedule(session, suite.id)
    if row is None:
        row = Schedule(
            project_id=suite.project_id,
            source=TEST_SUITE,
            suite_id=suite.id,
            created_at=now,
            next_fire_at=next_fire_at,
        )
        session.add(row)
    elif retimed:
        row.next_fire_at = next_fire_at
    row.name = suite.name
    row.cron = cron
    row.timezone = timezone
    row.ref = suite.ref
    row.variables = dict(suite.variables)
    row.updated_at = now
    await session.flush()
    return row


async def remove_suite_schedule(session: AsyncSession, suite_id: uuid.UUID) -> None:
    await session.execute(delete(Schedule).where(Schedule.suite_id == suite_id))


# -- reading ----------------------------------------------------------------------------------------
async def list_for_project(session: AsyncSession, project_id: uuid.UUID) -> list[Schedule]:
    """The project's schedules, the next to fire first (those that never fire last)."""
    rows = await session.scalars(
        select(Schedule)
        .where(Schedule.project_id == project_id)
        .order_by(Schedule.next_fire_at.asc().nulls_last(), Schedule.source, Schedule.name)
    )
    return list(rows)


async def list_all(session: AsyncSession) -> list[tuple[str, Schedule]]:
    """Every schedule of every project with the project's name, the next to fire first."""
    rows = await session.execute(
        select(Project.name, Schedule)
        .join(Project, Project.id == Schedule.project_id)
        .order_by(Schedule.next_fire_at.asc().nulls_last(), Project.name, Schedule.source, Schedule.name)
    )
    return [(name, schedule) for name, schedule in rows]


@dataclass(frozen=True, slots=True)
class ProjectRow:
    id: uuid.UUID
    repo_url: str
    default_branch: str
    updated_at: datetime


_PROJECT_COLUMNS = (Project.id, Project.repo_url, Project.default_branch, Project.updated_at)


async def projects_changed_since(session: AsyncSession, within_s: float) -> list[ProjectRow]:
    """Projects created or changed in the last `within_s` seconds (by the database's clock)."""
    changed = func.greatest(Project.updated_at, Project.created_at)
    rows = await session.execute(
        select(*_PROJECT_COLUMNS).where(changed > func.now() - func.make_interval(0, 0, 0, 0, 0, 0, within_s))
    )
    return [ProjectRow(*row) for row in rows]


async def all_projects(session: AsyncSession) -> list[ProjectRow]:
    rows = await session.execute(select(*_PROJECT_COLUMNS).order_by(Project.id))
    return [ProjectRow(*row) for row in rows]
