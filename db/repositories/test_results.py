"""Storing a stage attempt's test cases and coverage, in the worker's transaction that commits the
attempt's result under its fencing token (a fenced attempt's reports are discarded with it).

Cases go in with one `COPY` (10,000 cases in well under a second). On the way each case learns:
- `quarantined`: its key is quarantined in the project now;
- `flaky`: the framework said so (a rerun passed), or it passed where the same test failed on
  the same commit (an earlier attempt of this stage, or another run of the sha), or it failed
  where the same test passed in another run of the sha. The earlier failures a pass proves flaky
  are marked too.
A flaky test whose flip rate on the default branch (`schemas/flakiness.py`, as `GET
/projects/{id}/tests/flaky` shows it) reaches the project's `auto_quarantine_flip_rate` is
quarantined automatically (`quarantined_by` null, with the reason).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from db.repositories.tests import flakiness
from schemas.events import TestCounts


class CaseResult(Protocol):
    """A parsed test case (workers/reports/junit.py `CaseResult`)."""

    @property
    def key(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def classname(self) -> str: ...
    @property
    def file(self) -> str | None: ...
    @property
    def line(self) -> int | None: ...
    @property
    def status(self) -> str: ...
    @property
    def duration_s(self) -> float: ...
    @property
    def message(self) -> str | None: ...
    @property
    def output(self) -> str | None: ...
    @property
    def suite(self) -> str: ...
    @property
    def flaky(self) -> bool: ...


class CoverageCounts(Protocol):
    @property
    def line_rate(self) -> float | None: ...
    @property
    def branch_rate(self) -> float | None: ...
    @property
    def lines_covered(self) -> int: ...
    @property
    def lines_valid(self) -> int: ...
    @property
    def branches_covered(self) -> int: ...
    @property
    def branches_valid(self) -> int: ...


class FileCoverage(CoverageCounts, Protocol):
    @property
    def path(self) -> str: ...


class CoverageReport(CoverageCounts, Protocol):
    @property
    def files(self) -> Sequence[FileCoverage]: ...


class ReportProblem(Protocol):
    def as_dict(self) -> dict[str, str]: ...


class StageReports(Protocol):
    """What the worker read from a stage's reports (workers/reports/collect.py `StageReports`)."""

    @property
    def cases(self) -> Sequence[CaseResult]: ...
    @property
    def coverage(self) -> CoverageReport | None: ...
    @property
    def report_errors(self) -> Sequence[ReportProblem]: ...


_FAILING = ("failed", "errored")
CASE_COLUMNS = (
    "attempt_id",
    "project_id",
    "run_id",
    "stage_id",
    "stage",
    "attempt",
    "ref",
    "sha",
    "key",
    "name",
    "classname",
    "file",
    "line",
    "suite",
    "status",
    "duration_s",
    "message",
    "output",
    "flaky",
    "quarantined",
)


@dataclass(frozen=True, slots=True)
class AttemptRef:
    """Which attempt the reports belong to, and what history queries need about it."""

    attempt_id: uuid.UUID
    project_id: uuid.UUID
    run_id: uuid.UUID
    stage_id: uuid.UUID
    stage: str
    attempt: int
    ref: str
    sha: str | None


@dataclass(frozen=True, slots=True)
class Stored:
    tests: TestCounts | None
    report_errors: int
    # The unreadable reports ([{file, reason}]): the attempt's `report_errors`, which the
    # projection writes from its `attempt.finished` event together with `test_summary`.
    problems: list[dict[str, str]]
    line_rate: float | None
    branch_rate: float | None


# The project's quarantined keys (a handful): sending thousands of keys to filter by costs more.
_QUARANTINED = text("SELECT key FROM test_quarantine WHERE project_id = :project_id")
_FAILED_BEFORE = text(
    "SELECT DISTINCT key FROM test_cases WHERE attempt_id IN "
    "(SELECT id FROM stage_attempts WHERE stage_id = :stage_id AND number < :attempt) "
    "AND status IN ('failed', 'errored') AND key = ANY(:keys)"
)
# The commit filter is selective already; a `key = ANY(10,000 keys)` filter made planning cost more
# than the whole query (measured in the bench): the keys are matched here instead.
_SAME_SHA = text(
    "SELECT key, bool_or(status IN ('failed', 'errored')) AS failed, bool_or(status = 'passed') AS passed "
    "FROM test_cases WHERE project_id = :project_id AND sha = :sha AND run_id <> :run_id GROUP BY key"
)
_MARK_EARLIER_FLAKY = text(
    "UPDATE test_cases SET flaky = true WHERE project_id = :project_id AND key = ANY(:keys) "
    "AND status IN ('failed', 'errored') AND NOT flaky "
    "AND (attempt_id IN (SELECT id FROM stage_attempts WHERE stage_id = :stage_id AND number < :attempt) "
    "     OR (sha = :sha AND run_id <> :run_id))"
)
_AUTO_QUARANTINE_SETTING = text(
    "SELECT auto_quarantine_flip_rate AS threshold, 'refs/heads/' || default_branch AS ref "
    "FROM projects WHERE id = :project_id"
)
# The flip rate is the one `GET /projects/{id}/tests/flaky` shows, over the same window.
AUTO_QUARANTINE_WINDOW = timedelta(days=30)
_QUARANTINE = text(
    """
    INSERT INTO test_quarantine (project_id, key, name, classname, file, reason, quarantined_by)
    VALUES (:project_id, :key, :name, :classname, :file, :reason, NULL) ON CONFLICT DO NOTHING
    """
)
_COVERAGE = text(
    """
    INSERT INTO coverage_reports (id, attempt_id, project_id, run_id, stage_id, stage, ref, sha, line_rate,
        branch_rate, lines_covered, lines_valid, branches_covered, branches_valid, files)
    VALUES (:id, :attempt_id, :project_id, :run_id, :stage_id, :stage, :ref, :sha, :line_rate, :branch_rate,
        :lines_covered, :lines_valid, :branches_covered, :branches_valid, CAST(:files AS jsonb))
    """
)


async def store_reports(
    session: AsyncSession, at: AttemptRef, reports: StageReports, *, junit_asked: bool
) -> Stored:
    """Store what `reports` hold for the attempt `at`; returns what its result event carries."""
    cases = reports.cases
    keys = sorted({c.key for c in cases})
    quarantined: set[str] = set()
    flaky: set[str] = set()
    if keys:
        quarantined = await _keys(session, _QUARANTINED, project_id=at.project_id) & set(keys)
        flaky = await _flaky_keys(session, at, cases)
        await _copy(session, at, cases, quarantined, flaky)
        proven = sorted({c.key for c in cases if c.status == "passed" and c.key in flaky})
        if proven:
            await session.execute(
                _MARK_EARLIER_FLAKY,
                {
                    "project_id": at.project_id,
                    "keys": proven,
                    "stage_id": at.stage_id,
                    "attempt": at.attempt,
                    "sha": at.sha,
                    "run_id": at.run_id,
                },
            )
        if flaky:
            await _auto_quarantine(session, at, cases, flaky)
    counts = _counts(cases, quarantined, flaky) if junit_asked else None
    coverage = reports.coverage
    if coverage is not None:
        await session.execute(_COVERAGE, _coverage_row(at, coverage))
    return Stored(
        tests=counts,
        report_errors=len(reports.report_errors),
        problems=[p.as_dict() for p in reports.report_errors],
        line_rate=coverage.line_rate if coverage else None,
        branch_rate=coverage.branch_rate if coverage else None,
    )


async def _auto_quarantine(
    session: AsyncSession, at: AttemptRef, cases: Sequence[CaseResult], flaky: set[str]
) -> None:
    """Quarantine the flaky tests whose flip rate on the default branch reached the project's
    `auto_quarantine_flip_rate` (when set). Takes effect from the next attempt on: this one's
    verdict stands as its cases were when it ran."""
    setting = (await session.execute(_AUTO_QUARANTINE_SETTING, {"project_id": at.project_id})).one()
    if setting.threshold is None:
        return
    since = datetime.now(UTC) - AUTO_QUARANTINE_WINDOW
    found = await flakiness(session, at.project_id, ref=setting.ref, since=since, keys=flaky)
    named = {c.key: c for c in cases}
    for key in sorted(flaky):
        rate = found[key].flip_rate if key in found else None
        if rate is None or rate < setting.threshold:
            continue
        case = named[key]
        reason = (
            f"quarantined automatically: flip rate {rate:.2f} on {setting.ref.removeprefix('refs/heads/')} "
            f"reached the project's threshold of {setting.threshold:g}"
        )
        await session.execute(
            _QUARANTINE,
            {
                "project_id": at.project_id,
                "key": key,
                "name": _clean(case.name),
                "classname": _clean(case.classname),
                "file": _clean(case.file),
                "reason": reason,
            },
        )


async def _keys(session: AsyncSession, query: Any, **params: object) -> set[str]:
    return {row.key for row in await session.execute(query, params)}


async def _flaky_keys(session: AsyncSession, at: AttemptRef, cases: Sequence[CaseResult]) -> set[str]:
    flaky = {c.key for c in cases if c.flaky}
    passed = sorted({c.key for c in cases if c.status == "passed"})
    if passed and at.attempt > 1:
        flaky |= await _keys(session, _FAILED_BEFORE, stage_id=at.stage_id, attempt=at.attempt, keys=passed)
    if at.sha:
        rows = await session.execute(
            _SAME_SHA, {"project_id": at.project_id, "sha": at.sha, "run_id": at.run_id}
        )
        elsewhere = {row.key: (row.failed, row.passed) for row in rows}
        for case in cases:
            failed_there, passed_there = elsewhere.get(case.key, (False, False))
            if (case.status == "passed" and failed_there) or (case.status in _FAILING and passed_there):
                flaky.add(case.key)
    return flaky


def _counts(cases: Sequence[CaseResult], quarantined: set[str], flaky: set[str]) -> TestCounts:
    by_status = dict.fromkeys(("passed", "failed", "errored", "skipped"), 0)
    for case in cases:
        by_status[case.status] += 1
    return TestCounts(
        total=len(cases),
        **by_status,
        flaky=sum(1 for c in cases if c.key in flaky),
        quarantined=sum(1 for c in cases if c.status in _FAILING and c.key in quarantined),
        duration_s=round(sum(c.duration_s for c in cases), 3),
    )


async def _copy(
    session: AsyncSession,
    at: AttemptRef,
    cases: Sequence[CaseResult],
    quarantined: set[str],
    flaky: set[str],
) -> None:
    records = [
        (
            at.attempt_id,
            at.project_id,
            at.run_id,
            at.stage_id,
            at.stage,
            at.attempt,
            at.ref,
            at.sha,
            c.key,
            _clean(c.name),
            _clean(c.classname),
            _clean(c.file),
            c.line,
            _clean(c.suite) or None,
            c.status,
            c.duration_s,
            _clean(c.message),
            _clean(c.output) if c.status in _FAILING else None,  # the output of passing tests is noise
            c.key in flaky,
            c.key in quarantined and c.status in _FAILING,
        )
        for c in cases
    ]
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver = cast(Any, raw.driver_connection)  # asyncpg's Connection, inside our transaction
    await driver.copy_records_to_table("test_cases", records=records, columns=CASE_COLUMNS)


def _clean(value: str | None) -> str | None:
    """Text Postgres takes: no NUL, no lone surrogates (file names and output can hold both)."""
    if value is None:
        return None
    return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _coverage_row(at: AttemptRef, coverage: CoverageReport) -> dict[str, object]:
    files = [
        {
            "path": _clean(f.path),
            "line_rate": f.line_rate,
            "branch_rate": f.branch_rate,
            "lines_covered": f.lines_covered,
            "lines_valid": f.lines_valid,
            "branches_covered": f.branches_covered,
            "branches_valid": f.branches_valid,
        }
        for f in coverage.files
    ]
    return {
        "id": uuid.uuid4(),
        "attempt_id": at.attempt_id,
        "project_id": at.project_id,
        "run_id": at.run_id,
        "stage_id": at.stage_id,
        "stage": at.stage,
        "ref": at.ref,
        "sha": at.sha,
        "line_rate": coverage.line_rate,
        "branch_rate": coverage.branch_rate,
        "lines_covered": coverage.lines_covered,
        "lines_valid": coverage.lines_valid,
        "branches_covered": coverage.branches_covered,
        "branches_valid": coverage.branches_valid,
        "files": orjson.dumps(files).decode(),
    }
