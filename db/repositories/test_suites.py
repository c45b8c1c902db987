"""Test suites of a project, and each suite's schedule kept in step with it: the suite's
`schedule_cron`/`schedule_timezone` are mirrored by one `schedules` row (source `test_suite`,
named like the suite) in the same transaction, which the scheduler fires. Functions work in the
caller's transaction and never commit."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Schedule, TestSuite
from db.repositories import schedules
from db.repositories.errors import AlreadyExistsError
from schemas.cron import CronSchedule, next_fire

SUITE_CREATED = "test_suite.created"
SUITE_UPDATED = "test_suite.updated"
SUITE_DELETED = "test_suite.deleted"

_NAME_TAKEN = "a test suite with this name exists already in the project"


def _taken(exc: IntegrityError) -> AlreadyExistsError | None:
    text = str(exc.orig)
    if "uq_test_suites_project_id_name" in text or "uq_schedules_project_id_source_name" in text:
        return AlreadyExistsError(_NAME_TAKEN)
    return None


async def create_suite(
    session: AsyncSession,
    *,
    project_id: uuid.UUID,
    name: str,
    stages: list[str],
    ref: str,
    variables: dict[str, str],
    schedule: tuple[str, str] | None,
    created_by: uuid.UUID | None,
    now: datetime,
) -> tuple[TestSuite, Schedule | None]:
    """Insert a suite (and its schedule); AlreadyExistsError when the name is taken."""
    suite = TestSuite(
        project_id=project_id,
        name=name,
        stages=stages,
        ref=ref,
        variables=variables,
        schedule_cron=schedule[0] if schedule else None,
        schedule_timezone=schedule[1] if schedule else None,
        created_by=created_by,
        created_at=now,
        updated_at=now,
    )
    try:
        async with session.begin_nested():
            session.add(suite)
            await session.flush()
            row = await _sync_schedule(session, suite, now, retimed=True)
    except IntegrityError as exc:
        raise _taken(exc) or exc from None
    return suite, row


async def update_suite(
    session: AsyncSession, suite: TestSuite, changes: dict[str, Any], now: datetime
) -> tuple[TestSuite, Schedule | None]:
    """Apply `changes` (name, stages, ref, variables, schedule: (cron, timezone) or None) and keep
    the schedule in step: a new cron or zone moves its next tick, anything else keeps it."""
    before = (suite.schedule_cron, suite.schedule_timezone)
    try:
        async with session.begin_nested():
            for column in ("name", "stages", "ref", "variables"):
                if column in changes:
                    setattr(suite, column, changes[column])
            if "schedule" in changes:
                spec = changes["schedule"]
                suite.schedule_cron, suite.schedule_timezone = spec if spec else (None, None)
            suite.updated_at = now
            await session.flush()
            retimed = (suite.schedule_cron, suite.schedule_timezone) != before
            row = await _sync_schedule(session, suite, now, retimed=retimed)
    except IntegrityError as exc:
        raise _taken(exc) or exc from None
    return suite, row


async def _sync_schedule(
    session: AsyncSession, suite: TestSuite, now: datetime, *, retimed: bool
) -> Schedule | None:
    if suite.schedule_cron is None or suite.schedule_timezone is None:
        await schedules.remove_suite_schedule(session, suite.id)
        return None
    cron = CronSchedule(suite.schedule_cron, suite.schedule_timezone)
    return await schedules.put_suite_schedule(
        session,
        suite,
        cron=cron.cron,
        timezone=cron.timezone,
        next_fire_at=next_fire(cron, after=now),
        retimed=retimed,
        now=now,
    )


async def get_suite(session: AsyncSession, project_id: uuid.UUID, suite_id: uuid.UUID) -> TestSuite | None:
    return await session.scalar(
        select(TestSuite).where(TestSuite.project_id == project_id, TestSuite.id == suite_id)
    )


async def list_suites(
    session: AsyncSession, project_id: uuid.UUID, *, limit: int, after_name: str | None = None
) -> list[TestSuite]:
    """The project's suites by name, starting after `after_name`."""
    stmt = select(TestSuite).where(TestSuite.project_id == project_id)
    if after_name is not None:
        stmt = stmt.where(TestSuite.name > after_name)
    return list(await session.scalars(stmt.order_by(TestSuite.name).limit(limit)))


async def schedules_of(session: AsyncSession, suite_ids: list[uuid.UUID]) -> dict[uuid.UUID, Schedule]:
    if not suite_ids:
        return {}
    rows = await session.scalars(select(Schedule).where(Schedule.suite_id.in_(suite_ids)))
    return {row.suite_id: row for row in rows if row.suite_id is not None}


async def delete_suite(session: AsyncSession, suite: TestSuite) -> None:
    """Delete the suite and its schedule (its fired ticks go with it; its runs stay)."""
    await schedules.remove_suite_schedule(session, suite.id)
    await session.execute(delete(TestSuite).where(TestSuite.id == suite.id))
