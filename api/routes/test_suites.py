"""Test suites: named selections of a project's stages (names or globs) to run on a ref, by hand or
on a schedule. Reading needs viewer; creating, changing and deleting need maintainer (a suite is
project configuration, and its schedule runs unattended: docs/decisions/0015); running one needs
developer, like triggering any run. Changes are audited.

A suite's run holds only the stages it selects and every stage they need; when it selects no stage
of the `.comet.yml` at the commit, the run fails at once saying so.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Response

from api.access import Action, ProjectAccess, ProjectAccessDep, project_permit
from api.deps import BackboneDep, CurrentUser, JsonBody, SessionDep
from api.errors import Conflict, NotFound, ValidationFailed, problem_responses
from api.idempotency import Idempotent
from api.middleware import current_request_id
from api.routes import API_PREFIX, Cursor
from db.models import Schedule, TestSuite
from db.repositories import audit, test_suites
from db.repositories.errors import AlreadyExistsError
from db.repositories.runs import create_run
from schemas.api.common import CursorError, Page, decode_cursor, encode_cursor
from schemas.api.runs import RunAccepted
from schemas.api.test_suites import (
    SuiteRunCreate,
    SuiteScheduleOut,
    TestSuiteCreate,
    TestSuiteOut,
    TestSuiteUpdate,
)

router = APIRouter(prefix=API_PREFIX, tags=["test suites"], dependencies=[JsonBody])

SUITES = "/projects/{project_id}/test-suites"
SUITE = SUITES + "/{suite_id}"
SuiteId = Annotated[uuid.UUID, Path(description="The test suite's id.")]

_SCHEDULE_NOTE = (
    " A schedule fires exactly once per tick of `cron` in `timezone`; after downtime only the "
    "latest missed tick fires. Across daylight-saving changes a time skipped by the clocks "
    "(spring forward) fires once at the jump, and a time that happens twice (fall back) fires "
    "once, at its first occurrence — unless the hour field is `*`, which fires every real hour. "
    "An invalid `cron` or `timezone` is a 422 naming the field."
)


def _out(suite: TestSuite, schedule: Schedule | None) -> TestSuiteOut:
    return TestSuiteOut(
        id=suite.id,
        project_id=suite.project_id,
        name=suite.name,
        stages=list(suite.stages),
        ref=suite.ref,
        variables=dict(suite.variables),
        schedule=None
        if schedule is None
        else SuiteScheduleOut(
            cron=schedule.cron, timezone=schedule.timezone, next_fire_at=schedule.next_fire_at
        ),
        created_by=suite.created_by,
        created_at=suite.created_at,
        updated_at=suite.updated_at,
    )


async def _suite(session: SessionDep, access: ProjectAccess, suite_id: uuid.UUID) -> TestSuite:
    suite = await test_suites.get_suite(session, access.project.id, suite_id)
    if suite is None:
        raise NotFound(f"No test suite {suite_id} in this project.")
    return suite


@router.post(
    SUITES,
    summary="Create a test suite (maintainer or owner)",
    description="`stages` are stage names or globs: a base name (`unit`) selects every leg of a "
    "matrix or `parallel:` stage, a full leg name (`unit[python=3.12]`) that leg; the suite's runs "
    "also hold every stage the selected ones need. `ref` defaults to the project's default branch. "
    "A name used by another suite of the project is a 409." + _SCHEDULE_NOTE,
    status_code=201,
    response_model=TestSuiteOut,
    responses=problem_responses(401, 403, 404, 409, 413, 415, 422),
)
async def create_suite(
    body: TestSuiteCreate,
    access: Annotated[ProjectAccess, project_permit(Action.CONFIGURE)],
    user: CurrentUser,
    session: SessionDep,
    idempotent: Idempotent,
) -> TestSuiteOut:
    try:
        suite, schedule = await test_suites.create_suite(
            session,
            project_id=access.project.id,
            name=body.name,
            stages=body.stages,
            ref=body.ref or f"refs/heads/{access.project.default_branch}",
            variables=body.variables,
            schedule=(body.schedule.cron, body.schedule.timezone) if body.schedule else None,
            created_by=user.id,
            now=datetime.now(UTC),
        )
    except AlreadyExistsError as exc:
        raise Conflict(f"{exc.what[:1].upper()}{exc.what[1:]}: {body.name!r}.") from None
    await audit.record(
        session,
        action=test_suites.SUITE_CREATED,
        actor_id=user.id,
        target_type="test_suite",
        target_id=suite.id,
        project_id=access.project.id,
        details={"name": suite.name, "stages": suite.stages, "schedule": suite.schedule_cron},
    )
    created = _out(suite, schedule)
    await idempotent.commit(
        created, location=f"{API_PREFIX}/projects/{access.project.id}/test-suites/{suite.id}"
    )
    return created


@router.get(
    SUITES,
    summary="List a project's test suites, by name",
    response_model=Page[TestSuiteOut],
    responses=problem_responses(401, 404, 422),
)
async def list_suites(
    access: ProjectAccessDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Cursor = None,
) -> Page[TestSuiteOut]:
    try:
        after = decode_cursor(cursor) if cursor is not None else None
    except CursorError:
        raise ValidationFailed(errors=[("query.cursor", "is not a cursor returned by this API")]) from None
    found = await test_suites.list_suites(session, access.project.id, limit=limit + 1, after_name=after)
    page = found[:limit]
    rows = await test_suites.schedules_of(session, [s.id for s in page])
    next_cursor = encode_cursor(page[-1].name) if len(found) > limit else None
    return Page[TestSuiteOut](data=[_out(s, rows.get(s.id)) for s in page], next_cursor=next_cursor)


@router.get(
    SUITE,
    summary="Get a test suite",
    response_model=TestSuiteOut,
    responses=problem_responses(401, 404, 422),
)
async def get_suite(access: ProjectAccessDep, suite_id: SuiteId, session: SessionDep) -> TestSuiteOut:
    suite = await _suite(session, access, suite_id)
    return _out(suite, (await test_suites.schedules_of(session, [suite.id])).get(suite.id))


_NOT_NULL = ("name", "stages", "ref", "variables")


@router.patch(
    SUITE,
    summary="Change a test suite (maintainer or owner)",
    description="Only the fields sent change. `schedule: null` removes the schedule; a new `cron` or "
    "`timezone` moves the next tick, other changes keep it." + _SCHEDULE_NOTE,
    response_model=TestSuiteOut,
    responses=problem_responses(401, 403, 404, 409, 413, 415, 422),
)
async def update_suite(
    body: TestSuiteUpdate,
    access: Annotated[ProjectAccess, project_permit(Action.CONFIGURE)],
    suite_id: SuiteId,
    user: CurrentUser,
    session: SessionDep,
) -> TestSuiteOut:
    sent = body.model_fields_set
    errors = [(f"body.{k}", "must not be null") for k in _NOT_NULL if k in sent and getattr(body, k) is None]
    if errors:
        raise ValidationFailed(errors=errors)
    suite = await _suite(session, access, suite_id)
    changes: dict[str, Any] = {k: getattr(body, k) for k in _NOT_NULL if k in sent}
    if "schedule" in sent:
        changes["schedule"] = (body.schedule.cron, body.schedule.timezone) if body.schedule else None
    try:
        suite, schedule = await test_suites.update_suite(session, suite, changes, datetime.now(UTC))
    except AlreadyExistsError as exc:
        raise Conflict(f"{exc.what[:1].upper()}{exc.what[1:]}: {body.name!r}.") from None
    details = {k: (list(v) if isinstance(v, tuple) else v) for k, v in changes.items() if k != "variables"}
    if "variables" in changes:
        details["variables"] = sorted(changes["variables"])  # names only: values may be sensitive
    await audit.record(
        session,
        action=test_suites.SUITE_UPDATED,
        actor_id=user.id,
        target_type="test_suite",
        target_id=suite.id,
        project_id=access.project.id,
        details=details,
    )
    out = _out(suite, schedule)
    await session.commit()
    return out


@router.delete(
    SUITE,
    summary="Delete a test suite and its schedule (maintainer or owner)",
    description="Runs it started stay.",
    status_code=204,
    response_class=Response,
    responses=problem_responses(401, 403, 404, 422),
)
async def delete_suite(
    access: Annotated[ProjectAccess, project_permit(Action.CONFIGURE)],
    suite_id: SuiteId,
    user: CurrentUser,
    session: SessionDep,
) -> Response:
    suite = await _suite(session, access, suite_id)
    await test_suites.delete_suite(session, suite)
    await audit.record(
        session,
        action=test_suites.SUITE_DELETED,
        actor_id=user.id,
        target_type="test_suite",
        target_id=suite.id,
        project_id=access.project.id,
        details={"name": suite.name},
    )
    await session.commit()
    return Response(status_code=204)


@router.post(
    SUITE + "/runs",
    summary="Run a test suite",
    description="Answers 202 as soon as the run is durable, like triggering any run: a run of the "
    "suite's ref (or `sha`) holding only the suite's stages and what they need, with the suite's "
    "variables (those sent here win). Its trigger is `{kind: test_suite, suite_id, suite, stages, "
    "actor}`. Send an `Idempotency-Key` to make retries safe.",
    status_code=202,
    response_model=RunAccepted,
    responses=problem_responses(401, 403, 404, 413, 415, 422),
)
async def run_suite(
    access: Annotated[ProjectAccess, project_permit(Action.TRIGGER)],
    suite_id: SuiteId,
    user: CurrentUser,
    session: SessionDep,
    backbone: BackboneDep,
    idempotent: Idempotent,
    body: Annotated[SuiteRunCreate | None, Body()] = None,
) -> RunAccepted:
    suite = await _suite(session, access, suite_id)
    request = body or SuiteRunCreate()
    run = await create_run(
        session,
        backbone.topics,
        project_id=access.project.id,
        ref=suite.ref,
        sha=request.sha,
        trigger={
            "kind": "test_suite",
            "suite_id": str(suite.id),
            "suite": suite.name,
            "stages": list(suite.stages),
            "actor": str(user.id),
        },
        variables={**suite.variables, **request.variables},
        created_by=user.id,
        correlation_id=current_request_id(),
    )
    url = f"{API_PREFIX}/runs/{run.id}"
    accepted = RunAccepted(
        run_id=run.id, project_id=run.project_id, number=run.number, ref=run.ref, sha=run.sha, url=url
    )
    await idempotent.commit(accepted, location=url)
    backbone.wake_relay()
    return accepted
