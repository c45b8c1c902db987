"""Coverage: a run's line and branch coverage per stage and per file, with a pull request's delta
against its target branch, and the trend of a branch. Reads need viewer.

Rates are shown in percent (0..100, 2 decimals), as `coverage: {min: 80}` reads; workers store
fractions.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.access import ProjectAccessDep, RunAccessDep
from api.deps import JsonBody, SessionDep
from api.errors import ValidationFailed, problem_responses
from api.routes import API_PREFIX, Cursor
from db.models import CoverageReport, Run
from db.repositories import coverage
from schemas.api.common import CursorError, Page, decode_cursor, encode_cursor
from schemas.api.runs import normalise_ref
from schemas.api.tests import (
    CoverageBase,
    CoveragePoint,
    CoverageTotals,
    FileCoverage,
    RunCoverage,
    StageCoverage,
    percent,
    percent_of,
)

router = APIRouter(prefix=API_PREFIX, tags=["tests"], dependencies=[JsonBody])

_COUNTS = ("lines_covered", "lines_valid", "branches_covered", "branches_valid")


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _rate(stored: float | None, covered: int, valid: int) -> float | None:
    """The stored fraction in percent, or (none stored) the counts' rate."""
    return percent_of(stored) if stored is not None else percent(covered, valid)


def _file(entry: dict[str, Any]) -> FileCoverage:
    counts = {name: _count(entry.get(name)) for name in _COUNTS}
    line_rate, branch_rate = entry.get("line_rate"), entry.get("branch_rate")
    return FileCoverage(
        path=str(entry.get("path", "")),
        line_rate=percent_of(line_rate)
        if line_rate is not None
        else percent(counts["lines_covered"], counts["lines_valid"]),
        branch_rate=percent_of(branch_rate)
        if branch_rate is not None
        else percent(counts["branches_covered"], counts["branches_valid"]),
        **counts,
    )


def _stage(report: CoverageReport, attempt: int) -> StageCoverage:
    return StageCoverage(
        stage=report.stage,
        attempt=attempt,
        line_rate=_rate(report.line_rate, report.lines_covered, report.lines_valid),
        branch_rate=_rate(report.branch_rate, report.branches_covered, report.branches_valid),
        lines_covered=report.lines_covered,
        lines_valid=report.lines_valid,
        branches_covered=report.branches_covered,
        branches_valid=report.branches_valid,
        files=[_file(f) for f in report.files or [] if isinstance(f, dict)],
    )


def _totals(
    lines_covered: int, lines_valid: int, branches_covered: int, branches_valid: int
) -> CoverageTotals:
    return CoverageTotals(
        line_rate=percent(lines_covered, lines_valid),
        branch_rate=percent(branches_covered, branches_valid),
        lines_covered=lines_covered,
        lines_valid=lines_valid,
        branches_covered=branches_covered,
        branches_valid=branches_valid,
    )


def pull_request_target(run: Run) -> str | None:
    """The ref a pull-request run merges into (`refs/heads/<base_branch>`), else None."""
    trigger = run.trigger or {}
    base = trigger.get("base_branch")
    if trigger.get("event") != "pull_request" or not isinstance(base, str) or not base:
        return None
    try:
        return normalise_ref(base)
    except ValueError:
        return None


@router.get(
    "/runs/{run_id}/coverage",
    summary="A run's coverage, per stage and per file",
    description="Each stage's current attempt that measured coverage (Cobertura or lcov), and the "
    "run's overall coverage: the stages' covered and valid counts summed. Rates are in percent "
    "(0..100, 2 decimals). On a pull-request run, `base` is the latest run of the target branch "
    "with coverage and `delta` this run's overall line rate minus the base's, in percentage points.",
    response_model=RunCoverage,
    responses=problem_responses(401, 404, 422),
)
async def run_coverage(access: RunAccessDep, session: SessionDep) -> RunCoverage:
    run = access.run
    reports = await coverage.run_reports(session, run.id)
    stages = [_stage(report, attempt) for report, attempt in reports]
    overall = _totals(*(sum(getattr(s, name) for s in stages) for name in _COUNTS)) if stages else None
    base: CoverageBase | None = None
    delta: float | None = None
    target = pull_request_target(run)
    if target is not None:
        latest = await coverage.latest_of_ref(session, run.project_id, target, besides=run.id)
        if latest is not None:
            base = CoverageBase(
                ref=target,
                run_id=latest.run_id,
                run_number=latest.run_number,
                line_rate=percent(latest.lines_covered, latest.lines_valid),
            )
    if (
        base is not None
        and base.line_rate is not None
        and overall is not None
        and overall.line_rate is not None
    ):
        delta = round(overall.line_rate - base.line_rate, 2)
    return RunCoverage(overall=overall, stages=stages, base=base, delta=delta)


@router.get(
    "/projects/{project_id}/coverage",
    summary="The coverage trend of a branch, newest first",
    description="One point per run of the ref that measured coverage (its stages' current "
    "attempts summed), newest first, cursor-paginated. Rates are in percent (0..100, 2 decimals).",
    response_model=Page[CoveragePoint],
    responses=problem_responses(401, 404, 422),
)
async def coverage_trend(
    access: ProjectAccessDep,
    session: SessionDep,
    ref: Annotated[
        str | None,
        Query(description="The branch (`main` = `refs/heads/main`); default the project's default branch."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Cursor = None,
) -> Page[CoveragePoint]:
    errors: list[tuple[str, str]] = []
    before: uuid.UUID | None = None
    if cursor is not None:
        try:
            before = uuid.UUID(decode_cursor(cursor))
        except (CursorError, ValueError):
            errors.append(("query.cursor", "is not a cursor returned by this API"))
    try:
        full_ref = normalise_ref(ref if ref is not None else access.project.default_branch)
    except ValueError as exc:
        errors.append(("query.ref", str(exc)))
    if errors:
        raise ValidationFailed(errors=errors)
    points = await coverage.trend(session, access.project.id, full_ref, limit=limit + 1, before=before)
    page = points[:limit]
    data = [
        CoveragePoint(
            run_id=p.run_id,
            run_number=p.run_number,
            ref=p.ref,
            sha=p.sha,
            created_at=p.created_at,
            line_rate=percent(p.lines_covered, p.lines_valid),
            branch_rate=percent(p.branches_covered, p.branches_valid),
        )
        for p in page
    ]
    next_cursor = encode_cursor(str(page[-1].run_id)) if len(points) > limit else None
    return Page[CoveragePoint](data=data, next_cursor=next_cursor)
