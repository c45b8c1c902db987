"""Test results: a run's test summary and cases, and one test's history in a project. Reads need
viewer. The rows are written by workers from the stages' `reports.junit`.

Flaky tests and quarantine are in `api/routes/flaky_tests.py`; coverage in `api/routes/coverage.py`.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import ProjectAccessDep, RunAccessDep
from api.deps import JsonBody, SessionDep
from api.errors import NotFound, ValidationFailed, problem_responses
from api.routes import API_PREFIX, Cursor
from db.models import TestCase
from db.repositories import tests as tests_repo
from schemas.api.common import CursorError, Page, decode_cursor, encode_cursor
from schemas.api.tests import (
    CaseHistoryEntry,
    CaseOut,
    ReportError,
    ResultSummary,
    RunResults,
    StageResults,
)
from schemas.states import TestStatus

router = APIRouter(prefix=API_PREFIX, tags=["tests"], dependencies=[JsonBody])

KeyParam = Annotated[
    str, Path(max_length=100, description="The test's key: `key` of any of its cases (20 hex digits).")
]
_STATUSES = {s.value for s in TestStatus}
BAD_CURSOR = "is not a cursor returned by this API"


async def run_results(session: AsyncSession, run_id: uuid.UUID) -> RunResults:
    """The run's test summary: each stage's current attempt, and their sum."""
    stages = [
        StageResults(
            stage=r.stage,
            attempt=r.attempt,
            summary=None if r.summary is None else ResultSummary.from_stored(r.summary),
            report_errors=[
                ReportError(file=str(e.get("file", "")), reason=str(e.get("reason", "")))
                for e in r.report_errors
                if isinstance(e, dict)
            ],
        )
        for r in await tests_repo.stage_results(session, run_id)
    ]
    summary = ResultSummary.added(s.summary for s in stages if s.summary is not None)
    return RunResults(summary=summary, stages=stages)


def int_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        value = int(decode_cursor(cursor))
    except (CursorError, ValueError):
        raise ValidationFailed(errors=[("query.cursor", BAD_CURSOR)]) from None
    if value < 0:
        raise ValidationFailed(errors=[("query.cursor", BAD_CURSOR)])
    return value


def parse_statuses(values: list[str] | None) -> list[str]:
    """`?status=failed&status=errored` or `?status=failed,errored`: the statuses asked for."""
    wanted: list[str] = []
    for value in values or []:
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            if part not in _STATUSES:
                raise ValidationFailed(
                    errors=[
                        (
                            "query.status",
                            f"{part[:50]!r} is not a status: use passed, failed, errored or skipped",
                        )
                    ]
                )
            wanted.append(part)
    return sorted(set(wanted))


def _case(c: TestCase) -> CaseOut:
    return CaseOut(
        id=c.id,
        key=c.key,
        name=c.name,
        classname=c.classname,
        file=c.file,
        line=c.line,
        status=TestStatus(c.status),
        duration_s=c.duration_s,
        message=c.message,
        stage=c.stage,
        attempt=c.attempt,
        flaky=c.flaky,
        quarantined=c.quarantined,
    )


# -- a run's results -----------------------------------------------------------------------------
@router.get(
    "/runs/{run_id}/tests",
    summary="A run's test summary, overall and per stage",
    description="Counts from the test reports of each stage's current attempt, summed. `flaky` "
    "also counts the tests that failed in an earlier attempt of the run and passed in the current "
    "one. Stages without test reports are left out; all counts are 0 when no stage has any.",
    response_model=RunResults,
    responses=problem_responses(401, 404, 422),
)
async def get_run_tests(access: RunAccessDep, session: SessionDep) -> RunResults:
    return await run_results(session, access.run.id)


@router.get(
    "/runs/{run_id}/tests/cases",
    summary="A run's test cases",
    description="By id (the order they were stored), cursor-paginated. Only the cases of each "
    "stage's current attempt unless `all_attempts=true`. Captured output is not included.",
    response_model=Page[CaseOut],
    responses=problem_responses(401, 404, 422),
)
async def list_run_cases(
    access: RunAccessDep,
    session: SessionDep,
    status: Annotated[
        list[str] | None,
        Query(
            description="Only cases with these statuses (`passed`, `failed`, `errored`, `skipped`): "
            "repeat the parameter or separate them with commas (`status=failed,errored`)."
        ),
    ] = None,
    stage: Annotated[
        str | None,
        Query(
            max_length=300, description="Only this stage, by its full name (`unit[python=3.11]`, `e2e[1/4]`)."
        ),
    ] = None,
    flaky: Annotated[bool | None, Query(description="Only cases marked flaky (or not).")] = None,
    all_attempts: Annotated[bool, Query(description="Include the cases of earlier attempts.")] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Cursor = None,
) -> Page[CaseOut]:
    statuses = parse_statuses(status)
    after = int_cursor(cursor)
    cases = await tests_repo.run_cases(
        session,
        access.run.id,
        limit=limit + 1,
        after_id=after,
        statuses=statuses,
        stage=stage,
        flaky=flaky,
        all_attempts=all_attempts,
    )
    page = cases[:limit]
    next_cursor = encode_cursor(str(page[-1].id)) if len(cases) > limit else None
    return Page[CaseOut](data=[_case(c) for c in page], next_cursor=next_cursor)


# -- a test across runs --------------------------------------------------------------------------
@router.get(
    "/projects/{project_id}/tests/cases/{key}/history",
    summary="One test's results across runs, newest first",
    description="Every stored case of the test in the project (every stage and attempt), newest "
    "first, cursor-paginated. 404 for a key never seen in the project.",
    response_model=Page[CaseHistoryEntry],
    responses=problem_responses(401, 404, 422),
)
async def case_history(
    access: ProjectAccessDep,
    key: KeyParam,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Cursor = None,
) -> Page[CaseHistoryEntry]:
    before = int_cursor(cursor)
    entries = await tests_repo.case_history(
        session, access.project.id, key, limit=limit + 1, before_id=before
    )
    if not entries and (
        before is None or await tests_repo.latest_case(session, access.project.id, key) is None
    ):
        raise NotFound(f"No test {key} in this project.")
    page = entries[:limit]
    data = [
        CaseHistoryEntry(
            case_id=e.case.id,
            run_id=e.case.run_id,
            run_number=e.run_number,
            ref=e.case.ref,
            sha=e.case.sha,
            stage=e.case.stage,
            attempt=e.case.attempt,
            status=TestStatus(e.case.status),
            duration_s=e.case.duration_s,
            message=e.case.message,
            flaky=e.case.flaky,
            quarantined=e.case.quarantined,
            created_at=e.case.created_at,
        )
        for e in page
    ]
    next_cursor = encode_cursor(str(page[-1].case.id)) if len(entries) > limit else None
    return Page[CaseHistoryEntry](data=data, next_cursor=next_cursor)
