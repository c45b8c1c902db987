"""Coverage as the API reads it: a run's coverage per stage (current attempts), the latest run of a
branch with coverage (a pull request's base), and the trend of a branch, one point per run.

Workers write `coverage_reports` (one row per attempt, rates as fractions); nothing here writes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import CoverageReport, Run, Stage, StageAttempt

_CURRENT = and_(Stage.id == StageAttempt.stage_id, Stage.attempt == StageAttempt.number)


async def run_reports(session: AsyncSession, run_id: uuid.UUID) -> list[tuple[CoverageReport, int]]:
    """The coverage of each stage's current attempt with the attempt's number, in run order."""
    stmt = (
        select(CoverageReport, StageAttempt.number)
        .join(StageAttempt, StageAttempt.id == CoverageReport.attempt_id)
        .join(Stage, _CURRENT)
        .where(CoverageReport.run_id == run_id)
        .order_by(Stage.position, Stage.name)
    )
    return [(report, number) for report, number in (await session.execute(stmt)).all()]


@dataclass(frozen=True, slots=True)
class RunTotals:
    run_id: uuid.UUID
    run_number: int
    ref: str
    sha: str | None
    created_at: datetime
    lines_covered: int
    lines_valid: int
    branches_covered: int
    branches_valid: int


def _totals_statement(
    project_id: uuid.UUID, ref: str
) -> Select[uuid.UUID, int, str, str | None, datetime, int, int, int, int]:
    return (
        select(
            Run.id,
            Run.number,
            Run.ref,
            Run.sha,
            Run.created_at,
            func.sum(CoverageReport.lines_covered),
            func.sum(CoverageReport.lines_valid),
            func.sum(CoverageReport.branches_covered),
            func.sum(CoverageReport.branches_valid),
        )
        .join(StageAttempt, StageAttempt.id == CoverageReport.attempt_id)
        .join(Stage, _CURRENT)
        .join(Run, Run.id == CoverageReport.run_id)
        .where(CoverageReport.project_id == project_id, CoverageReport.ref == ref)
        .group_by(Run.id)
    )


async def trend(
    session: AsyncSession, project_id: uuid.UUID, ref: str, *, limit: int, before: uuid.UUID | None = None
) -> list[RunTotals]:
    """The runs of `ref` with coverage, newest first (run ids are time-ordered), each with its
    stages' counts summed; older than the run `before` when given."""
    stmt = _totals_statement(project_id, ref)
    if before is not None:
        stmt = stmt.where(CoverageReport.run_id < before)
    rows = await session.execute(stmt.order_by(Run.id.desc()).limit(limit))
    return [RunTotals(*row) for row in rows.all()]


async def latest_of_ref(
    session: AsyncSession, project_id: uuid.UUID, ref: str, *, besides: uuid.UUID
) -> RunTotals | None:
    """The latest run of `ref` (other than `besides`) that measured coverage, with its totals."""
    latest = await session.scalar(
        select(CoverageReport.run_id)
        .join(StageAttempt, StageAttempt.id == CoverageReport.attempt_id)
        .join(Stage, _CURRENT)
        .where(
            CoverageReport.project_id == project_id,
            CoverageReport.ref == ref,
            CoverageReport.run_id != besides,
        )
        .order_by(CoverageReport.created_at.desc())
        .limit(1)
    )
    if latest is None:
        return None
    stmt = _totals_statement(project_id, ref).where(Run.id == latest)
    row = (await session.execute(stmt)).first()
    return None if row is None else RunTotals(*row)
