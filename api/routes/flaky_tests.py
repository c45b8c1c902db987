"""Flaky tests and quarantine: the project's flaky tests (the rule is `schemas/flakiness.py`'s),
and quarantining or releasing a test (maintainer+, `manage_tests`, audited). Reads need viewer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from api.access import Action, ProjectAccess, ProjectAccessDep, project_permit
from api.deps import CurrentUser, JsonBody, SessionDep
from api.errors import NotFound, ValidationFailed, problem_responses
from api.routes import API_PREFIX, Cursor
from api.routes.tests import BAD_CURSOR, KeyParam, int_cursor
from db.models import TestQuarantine
from db.repositories import audit
from db.repositories import tests as tests_repo
from schemas.api.common import CursorError, Page, decode_cursor, encode_cursor
from schemas.api.tests import FlakyPage, FlakyTestOut, QuarantineOut, QuarantineRequest
from schemas.durations import parse_duration

router = APIRouter(prefix=API_PREFIX, tags=["tests"], dependencies=[JsonBody])

_MIN_WINDOW_S, _MAX_WINDOW_S = 3600.0, 366 * 86400.0
_ALREADY_QUARANTINED: dict[int | str, dict[str, Any]] = {
    200: {"model": QuarantineOut, "description": "It already was quarantined: the reason is replaced."}
}


def parse_window(window: str) -> timedelta:
    try:
        seconds = parse_duration(window)
    except ValueError as exc:
        raise ValidationFailed(errors=[("query.window", str(exc))]) from None
    if not _MIN_WINDOW_S <= seconds <= _MAX_WINDOW_S:
        raise ValidationFailed(errors=[("query.window", "must be between 1h and 366d")])
    return timedelta(seconds=seconds)


def _quarantine(q: TestQuarantine) -> QuarantineOut:
    return QuarantineOut(
        key=q.key,
        name=q.name,
        classname=q.classname,
        file=q.file,
        reason=q.reason,
        quarantined_by=q.quarantined_by,
        created_at=q.created_at,
    )


# -- flaky tests ---------------------------------------------------------------------------------
@router.get(
    "/projects/{project_id}/tests/flaky",
    summary="The project's flaky tests",
    description="A test is listed when, within the window, (1) a case of it was marked flaky: it "
    "passed after failing on the same commit (an earlier attempt of its stage, or another run of "
    "the same sha), the failing case of such a pair, or its framework reran it (Surefire); or "
    "(2) its result flips between pass and fail across the runs of the project's default branch. "
    "A run's result is `failed` when a case of the test failed or errored in its stage's current "
    "attempt, `passed` otherwise (skipped-only runs do not count). The flip rate is the number of "
    "changes between consecutive results divided by (results - 1), over the test's last 50 runs "
    "of the default branch in the window; it is listed when that is above 0. Highest flip rate "
    "first, then most flaky runs, then latest flake.",
    response_model=FlakyPage,
    responses=problem_responses(401, 404, 422),
)
async def flaky_tests(
    access: ProjectAccessDep,
    session: SessionDep,
    window: Annotated[
        str, Query(description="How far back to look: `30d`, `7d`, `12h` (1h to 366d).")
    ] = "30d",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Cursor = None,
) -> FlakyPage:
    span = parse_window(window)
    offset = int_cursor(cursor) or 0
    since = datetime.now(UTC) - span
    ref = f"refs/heads/{access.project.default_branch}"
    found = await tests_repo.flakiness(session, access.project.id, ref=ref, since=since)
    listed = sorted(
        ((key, f) for key, f in found.items() if f.listed),
        key=lambda kf: (
            -(kf[1].flip_rate or 0.0),
            -kf[1].flaky_count,
            -(kf[1].last_flake_at or since).timestamp(),
            kf[0],
        ),
    )
    page = listed[offset : offset + limit]
    keys = [key for key, _ in page]
    names = await tests_repo.identities(session, access.project.id, keys)
    quarantined = await tests_repo.quarantined_keys(session, access.project.id, keys)
    data = []
    for key, f in page:
        identity = names.get(key)
        rate = f.flip_rate
        data.append(
            FlakyTestOut(
                key=key,
                name=identity.name if identity else "",
                classname=identity.classname if identity else "",
                file=identity.file if identity else None,
                flaky_count=f.flaky_count,
                last_flake_at=f.last_flake_at,
                flip_rate=None if rate is None else round(rate, 4),
                flips=f.flips,
                runs_considered=f.runs_considered,
                quarantined=key in quarantined,
            )
        )
    more = len(listed) > offset + limit
    return FlakyPage(
        data=data,
        next_cursor=encode_cursor(str(offset + limit)) if more else None,
        window=window,
        since=since,
        ref=ref,
    )


# -- quarantine ----------------------------------------------------------------------------------
@router.get(
    "/projects/{project_id}/tests/quarantine",
    summary="The project's quarantined tests",
    description="By key, cursor-paginated.",
    response_model=Page[QuarantineOut],
    responses=problem_responses(401, 404, 422),
)
async def list_quarantine(
    access: ProjectAccessDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Cursor = None,
) -> Page[QuarantineOut]:
    after: str | None = None
    if cursor is not None:
        try:
            after = decode_cursor(cursor)
        except CursorError:
            raise ValidationFailed(errors=[("query.cursor", BAD_CURSOR)]) from None
        if not tests_repo.storable(after):  # a key we handed out holds no NUL
            raise ValidationFailed(errors=[("query.cursor", BAD_CURSOR)])
    rows = await tests_repo.list_quarantined(session, access.project.id, limit=limit + 1, after_key=after)
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1].key) if len(rows) > limit else None
    return Page[QuarantineOut](data=[_quarantine(q) for q in page], next_cursor=next_cursor)


@router.put(
    "/projects/{project_id}/tests/quarantine/{key}",
    summary="Quarantine a test (maintainer or owner)",
    description="From the next run on, a failure of this test no longer fails its stage: the "
    "stage succeeds and its summary counts the quarantined failures. Its name, classname and file "
    "are taken from its latest case. 201 when newly quarantined, 200 when it already was (the "
    "reason is replaced). 404 for a key never seen in the project. Audited.",
    response_model=QuarantineOut,
    status_code=201,
    responses={**_ALREADY_QUARANTINED, **problem_responses(401, 403, 404, 413, 415, 422)},
)
async def quarantine_test(
    access: Annotated[ProjectAccess, project_permit(Action.MANAGE_TESTS)],
    key: KeyParam,
    user: CurrentUser,
    session: SessionDep,
    response: Response,
    body: QuarantineRequest | None = None,
) -> QuarantineOut:
    latest = await tests_repo.latest_case(session, access.project.id, key)
    if latest is None:
        raise NotFound(f"No test {key} in this project.")
    reason = body.reason if body is not None else None
    row, created = await tests_repo.quarantine(session, access.project.id, latest, reason=reason, by=user.id)
    await audit.record(
        session,
        action=audit.TEST_QUARANTINED,
        actor_id=user.id,
        target_type="test",
        target_id=key,
        project_id=access.project.id,
        details={"name": latest.name[:500], "classname": latest.classname[:500], "reason": reason},
    )
    out = _quarantine(row)
    await session.commit()
    response.status_code = 201 if created else 200
    return out


@router.delete(
    "/projects/{project_id}/tests/quarantine/{key}",
    summary="Release a quarantined test (maintainer or owner)",
    description="Its failures fail its stage again from the next run on. 404 when the test is not "
    "quarantined. Audited.",
    status_code=204,
    response_class=Response,
    responses=problem_responses(401, 403, 404, 422),
)
async def release_test(
    access: Annotated[ProjectAccess, project_permit(Action.MANAGE_TESTS)],
    key: KeyParam,
    user: CurrentUser,
    session: SessionDep,
) -> Response:
    released = await tests_repo.release(session, access.project.id, key)
    if released is None:
        raise NotFound(f"Test {key} is not quarantined in this project.")
    await audit.record(
        session,
        action=audit.TEST_RELEASED,
        actor_id=user.id,
        target_type="test",
        target_id=key,
        project_id=access.project.id,
        details={"name": (released.name or "")[:500], "reason": released.reason},
    )
    await session.commit()
    return Response(status_code=204)
