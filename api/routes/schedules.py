"""Schedules of a project, as the orchestrator fires them: the pipeline's `on.schedule` entries (from
the default branch's `.comet.yml`) and the test suites' schedules, each with its next tick.
Reading needs viewer."""

from __future__ import annotations

from typing import Literal, cast

from fastapi import APIRouter

from api.access import ProjectAccessDep
from api.deps import JsonBody, SessionDep
from api.errors import problem_responses
from api.routes import API_PREFIX
from db.repositories import schedules
from schemas.api.common import Page
from schemas.api.test_suites import ScheduleOut

router = APIRouter(prefix=API_PREFIX, tags=["test suites"], dependencies=[JsonBody])


@router.get(
    "/projects/{project_id}/schedules",
    summary="A project's schedules with their next fire time",
    description="Pipeline schedules (`source: pipeline`) follow the `on.schedule` entries of the "
    "`.comet.yml` on the project's default branch: the orchestrator re-reads it when it plans a "
    "run of that branch's tip, soon after the project changes, and every few minutes; one that no "
    "longer validates keeps the last good schedules. A pipeline schedule is named by what it fires "
    "(`<cron> <timezone> <ref>`). Test-suite schedules (`source: test_suite`) carry the suite's "
    "name. Each fires exactly once per tick; after downtime only the latest missed tick fires. "
    "Across daylight-saving changes a time skipped by the clocks fires once at the jump, and a "
    "time that happens twice fires once (at its first occurrence) unless the hour field is `*`. "
    "The next to fire comes first.",
    response_model=Page[ScheduleOut],
    responses=problem_responses(401, 404, 422),
)
async def list_schedules(access: ProjectAccessDep, session: SessionDep) -> Page[ScheduleOut]:
    rows = await schedules.list_for_project(session, access.project.id)
    return Page[ScheduleOut](
        data=[
            ScheduleOut(
                source=cast(Literal["pipeline", "test_suite"], row.source),
                name=row.name,
                cron=row.cron,
                timezone=row.timezone,
                ref=row.ref,
                next_fire_at=row.next_fire_at,
                last_tick_at=row.last_tick_at,
                suite_id=row.suite_id,
            )
            for row in rows
        ]
    )
