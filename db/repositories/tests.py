"""Test results as the API reads them: each stage's current test summary, a run's cases, one test's
history in a project, what the flaky-test rule needs, and the quarantine list.

Workers write `test_cases` and the attempts' `test_summary` (see `db/models/testing.py`); only the
quarantine is written here. Access checks are the caller's (see `api/access.py`).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, and_, delete, func, literal, literal_column, select
from sqlalchemy.dialects.postgresql import aggregate_order_by, distinct_on, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from db.models import Run, Stage, StageAttempt, TestCase, TestQuarantine
from schemas.flakiness import FLIP_RESULTS, Flakiness
from schemas.states import TestStatus

FAILING = (TestStatus.FAILED.value, TestStatus.ERRORED.value)


def storable(text: str) -> bool:
    """Whether PostgreSQL can hold `text` (no NUL): a key or stage name it cannot hold was never
    stored, so a lookup of one finds nothing instead of failing."""
    return "\x00" not in text


def _current(case: type[TestCase] = TestCase) -> Any:
    """Join condition: the case belongs to its stage's current attempt."""
    return and_(Stage.id == case.stage_id, Stage.attempt == case.attempt)


# -- a run's summary -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StageResult:
    stage: str
    attempt: int
    summary: dict[str, Any] | None  # as stored, `flaky` counting retries (see `stage_results`)
    report_errors: list[dict[str, Any]]


async def stage_results(session: AsyncSession, run_id: uuid.UUID) -> list[StageResult]:
    """Each stage's current attempt that has a test summary or report errors, in run order.

    The stored `flaky` count of a retried stage also counts the tests that failed in an earlier
    attempt of the stage and passed in the current one (whether or not the worker flagged them).
    """
    rows = (
        await session.execute(
            select(
                Stage.name,
                Stage.attempt,
                StageAttempt.id,
                StageAttempt.test_summary,
                StageAttempt.report_errors,
            )
            .join(StageAttempt, and_(StageAttempt.stage_id == Stage.id, StageAttempt.number == Stage.attempt))
            .where(Stage.run_id == run_id)
            .order_by(Stage.position, Stage.name)
        )
    ).all()
    with_reports = [r for r in rows if r.test_summary is not None or r.report_errors]
    retried = [r.id for r in with_reports if r.attempt > 1 and r.test_summary is not None]
    flaky = await _flaky_after_retry(session, run_id, retried) if retried else {}
    results = []
    for r in with_reports:
        summary = dict(r.test_summary) if r.test_summary is not None else None
        if summary is not None and r.id in flaky:
            stored = summary.get("flaky")
            # The cases are the finer record; a count the worker made without cases still stands.
            summary["flaky"] = max(flaky[r.id], stored if isinstance(stored, int) else 0)
        results.append(StageResult(r.name, r.attempt, summary, list(r.report_errors or [])))
    return results


async def _flaky_after_retry(
    session: AsyncSession, run_id: uuid.UUID, attempt_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """Per current attempt: its cases marked flaky, or that passed after failing in an earlier
    attempt of the same stage of this run."""
    earlier = (
        select(TestCase.stage_id, TestCase.key)
        .join(Stage, Stage.id == TestCase.stage_id)
        .where(TestCase.run_id == run_id, TestCase.attempt < Stage.attempt, TestCase.status.in_(FAILING))
        .distinct()
        .subquery()
    )
    current = TestCase
    stmt = (
        select(current.attempt_id, func.count())
        .outerjoin(earlier, and_(earlier.c.stage_id == current.stage_id, earlier.c.key == current.key))
        .where(
            current.run_id == run_id,
            current.attempt_id.in_(attempt_ids),
            current.flaky.is_(True)
            | (current.status == TestStatus.PASSED.value) & earlier.c.key.is_not(None),
        )
        .group_by(current.attempt_id)
    )
    return {attempt_id: int(n) for attempt_id, n in (await session.execute(stmt)).all()}


# -- a run's cases -------------------------------------------------------------------------------
async def run_cases(
    session: AsyncSession,
    run_id: uuid.UUID,
    *,
    limit: int,
    after_id: int | None = None,
    statuses: Collection[str] = (),
    stage: str | None = None,
    flaky: bool | None = None,
    all_attempts: bool = False,
) -> Sequence[TestCase]:
    """The run's cases by id (without their captured output), at most `limit`, after `after_id`;
    only the stages' current attempts unless `all_attempts`."""
    if stage is not None and not storable(stage):
        return []
    stmt = select(TestCase).options(defer(TestCase.output)).where(TestCase.run_id == run_id)
    if not all_attempts:
        stmt = stmt.join(Stage, _current())
    if after_id is not None:
        stmt = stmt.where(TestCase.id > after_id)
    if statuses:
        stmt = stmt.where(TestCase.status.in_(list(statuses)))
    if stage is not None:
        stmt = stmt.where(TestCase.stage == stage)
    if flaky is not None:
        stmt = stmt.where(TestCase.flaky.is_(flaky))
    return (await session.scalars(stmt.order_by(TestCase.id).limit(limit))).all()


# -- one test's history ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class HistoryEntry:
    case: TestCase
    run_number: int


def history_statement(project_id: uuid.UUID, key: str, *, limit: int, before_id: int | None = None) -> Any:
    """Newest first: the page's ids come from `ix_test_cases_history (project_id, key, id)` read
    backwards and stopped after `limit` entries (whatever the test's history length), then only
    those cases are read and joined to their runs."""
    ids = select(TestCase.id).where(TestCase.project_id == project_id, TestCase.key == key)
    if before_id is not None:
        ids = ids.where(TestCase.id < before_id)
    page = ids.order_by(TestCase.id.desc()).limit(limit).subquery()
    return (
        select(TestCase, Run.number)
        .options(defer(TestCase.output))
        .join(page, page.c.id == TestCase.id)
        .join(Run, Run.id == TestCase.run_id)
        .order_by(TestCase.id.desc())
    )


async def case_history(
    session: AsyncSession, project_id: uuid.UUID, key: str, *, limit: int, before_id: int | None = None
) -> list[HistoryEntry]:
    if not storable(key):
        return []
    rows = await session.execute(history_statement(project_id, key, limit=limit, before_id=before_id))
    return [HistoryEntry(case, number) for case, number in rows.all()]


async def latest_case(session: AsyncSession, project_id: uuid.UUID, key: str) -> TestCase | None:
    """The project's most recent case of the test `key` (None: never seen in the project)."""
    if not storable(key):
        return None
    stmt = (
        select(TestCase)
        .options(defer(TestCase.output))
        .where(TestCase.project_id == project_id, TestCase.key == key)
        .order_by(TestCase.id.desc())
        .limit(1)
    )
    return (await session.scalars(stmt)).first()


# -- flaky tests ---------------------------------------------------------------------------------
async def flakiness(
    session: AsyncSession,
    project_id: uuid.UUID,
    *,
    ref: str,
    since: datetime,
    keys: Collection[str] | None = None,
) -> dict[str, Flakiness]:
    """What `schemas.flakiness` needs for every test with a flaky case in the project since
    `since`, or with results on `ref` since then (one per run: failed when a case of the stage's
    current attempt failed or errored; at most the last `FLIP_RESULTS` runs, oldest first)."""
    flaky_rows = (
        await session.execute(
            select(TestCase.key, func.count(TestCase.run_id.distinct()), func.max(TestCase.created_at))
            .where(TestCase.project_id == project_id, TestCase.flaky.is_(True), TestCase.created_at >= since)
            .where(*_only(keys))
            .group_by(TestCase.key)
        )
    ).all()
    per_run = (
        select(
            TestCase.key,
            Run.number,
            func.max(TestCase.created_at).label("at"),
            func.bool_or(TestCase.status.in_(FAILING)).label("failed"),
        )
        .join(Stage, _current())
        .join(Run, Run.id == TestCase.run_id)
        .where(
            TestCase.project_id == project_id,
            TestCase.ref == ref,
            TestCase.created_at >= since,
            TestCase.status != TestStatus.SKIPPED.value,
            *_only(keys),
        )
        .group_by(TestCase.key, Run.number)
        .subquery()
    )
    ranked = select(
        per_run,
        func.row_number().over(partition_by=per_run.c.key, order_by=per_run.c.number.desc()).label("rn"),
    ).subquery()
    result_rows = (
        await session.execute(
            select(
                ranked.c.key,
                func.array_agg(aggregate_order_by(ranked.c.failed, ranked.c.number)),
                func.array_agg(aggregate_order_by(ranked.c.at, ranked.c.number)),
            )
            .where(ranked.c.rn <= literal(FLIP_RESULTS))
            .group_by(ranked.c.key)
        )
    ).all()
    found: dict[str, Flakiness] = {}
    flaky_by_key = {key: (int(count), at) for key, count, at in flaky_rows}
    results_by_key = {key: (list(failed), list(times)) for key, failed, times in result_rows}
    for key in flaky_by_key.keys() | results_by_key.keys():
        count, last = flaky_by_key.get(key, (0, None))
        results, times = results_by_key.get(key, ([], []))
        found[key] = Flakiness(count, last, results, times)
    return found


def _only(keys: Collection[str] | None) -> list[Any]:
    return [] if keys is None else [TestCase.key.in_(list(keys))]


@dataclass(frozen=True, slots=True)
class CaseIdentity:
    name: str
    classname: str
    file: str | None


async def identities(
    session: AsyncSession, project_id: uuid.UUID, keys: Collection[str]
) -> dict[str, CaseIdentity]:
    """Name, classname and file of each test as its latest case gave them."""
    if not keys:
        return {}
    rows = await session.execute(
        select(TestCase.key, TestCase.name, TestCase.classname, TestCase.file)
        .where(TestCase.project_id == project_id, TestCase.key.in_(list(keys)))
        .ext(distinct_on(TestCase.key))
        .order_by(TestCase.key, TestCase.id.desc())
    )
    return {key: CaseIdentity(name, classname, file) for key, name, classname, file in rows.all()}


# -- quarantine ----------------------------------------------------------------------------------
async def quarantined_keys(session: AsyncSession, project_id: uuid.UUID, keys: Collection[str]) -> set[str]:
    if not keys:
        return set()
    rows = await session.scalars(
        select(TestQuarantine.key).where(
            TestQuarantine.project_id == project_id, TestQuarantine.key.in_(list(keys))
        )
    )
    return set(rows.all())


async def quarantine(
    session: AsyncSession,
    project_id: uuid.UUID,
    latest: TestCase,
    *,
    reason: str | None,
    by: uuid.UUID | None,
) -> tuple[TestQuarantine, bool]:
    """Quarantine the test of `latest` (its latest case): (the row, whether it is new). Quarantining
    it again changes the reason and who did it, and keeps when it was first quarantined."""
    values: dict[str, Any] = {
        "name": latest.name,
        "classname": latest.classname,
        "file": latest.file,
        "reason": reason,
        "quarantined_by": by,
    }
    stmt = (
        insert(TestQuarantine)
        .values(project_id=project_id, key=latest.key, **values)
        .on_conflict_do_update(index_elements=[TestQuarantine.project_id, TestQuarantine.key], set_=values)
        # xmax = 0: the row was inserted, not updated.
        .returning(TestQuarantine, literal_column("(xmax = 0)", Boolean))
    )
    row, created = (await session.execute(stmt.execution_options(populate_existing=True))).one()
    return row, bool(created)


async def release(session: AsyncSession, project_id: uuid.UUID, key: str) -> TestQuarantine | None:
    """Release a quarantined test: the row that was deleted, or None when it was not quarantined."""
    if not storable(key):
        return None
    stmt = (
        delete(TestQuarantine)
        .where(TestQuarantine.project_id == project_id, TestQuarantine.key == key)
        .returning(TestQuarantine)
    )
    return (await session.scalars(stmt)).first()


async def list_quarantined(
    session: AsyncSession, project_id: uuid.UUID, *, limit: int, after_key: str | None = None
) -> Sequence[TestQuarantine]:
    """The project's quarantined tests by key."""
    stmt = select(TestQuarantine).where(TestQuarantine.project_id == project_id)
    if after_key is not None:
        stmt = stmt.where(TestQuarantine.key > after_key)
    return (await session.scalars(stmt.order_by(TestQuarantine.key).limit(limit))).all()
