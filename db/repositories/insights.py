"""Insight facts: `comet analytics` upserts them (docs/decisions/0025); the API aggregates them over a
window. Nothing else writes `insight_facts`, and the API reads nothing else for its insights.

Percentiles are Postgres' `percentile_cont` (linear interpolation), so they equal the same
computation over the rows the facts came from; time to restore is computed here in Python with
the same interpolation (`percentile`).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from db.models import InsightFact

_UPDATED = (
    "project_id",
    "at",
    "status",
    "environment",
    "stage",
    "value_s",
    "wait_s",
    "tests_total",
    "tests_flaky",
)


async def upsert(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Write facts (a fact seen again is rewritten with its current values)."""
    if not rows:
        return
    stmt = insert(InsightFact.__table__)  # type: ignore[arg-type]
    stmt = stmt.on_conflict_do_update(
        index_elements=["kind", "member_id"],
        set_={name: stmt.excluded[name] for name in _UPDATED} | {"updated_at": text("now()")},
    )
    await conn.execute(stmt, list(rows))


async def delete(conn: AsyncConnection, keys: Iterable[tuple[str, str]]) -> None:
    """Remove facts that no longer hold (a finished run retried is running again)."""
    params = [{"kind": kind, "member_id": member} for kind, member in keys]
    if params:
        await conn.execute(
            text("DELETE FROM insight_facts WHERE kind = :kind AND member_id = CAST(:member_id AS uuid)"),
            params,
        )


async def finished_without_fact(
    conn: AsyncConnection, *, settled_s: float, within_s: float, limit: int = 500
) -> list[uuid.UUID]:
    """Runs that finished between `within_s` and `settled_s` ago and have no run fact: analytics
    missed an event of theirs (docs/decisions/0030)."""
    rows = await conn.execute(
        text(
            "SELECT r.id FROM runs r WHERE r.finished_at >= now() - make_interval(secs => :within) "
            "AND r.finished_at < now() - make_interval(secs => :settled) "
            "AND r.status IN ('succeeded', 'failed', 'cancelled') "
            "AND NOT EXISTS (SELECT 1 FROM insight_facts f WHERE f.kind = 'run' AND f.member_id = r.id) "
            "ORDER BY r.finished_at LIMIT :limit"
        ),
        {"within": within_s, "settled": settled_s, "limit": limit},
    )
    return [row[0] for row in rows]


# -- reading -------------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float | None:
    """`percentile_cont(q)`: linear interpolation between the closest ranks; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def restore_times(deployments: Iterable[tuple[str, datetime, str]]) -> list[float]:
    """Time to restore, per environment: from the first failed deployment after a healthy state
    to the next successful one. `deployments` are (environment, at, status) in time order."""
    failing_since: dict[str, datetime] = {}
    found: list[float] = []
    for environment, at, status in deployments:
        if status == "failed":
            failing_since.setdefault(environment, at)
        elif status == "succeeded" and environment in failing_since:
            found.append((at - failing_since.pop(environment)).total_seconds())
    return found


@dataclass(frozen=True, slots=True)
class StageFigures:
    stage: str
    duration_p50_s: float | None
    duration_p95_s: float | None
    queue_wait_p50_s: float | None
    queue_wait_p95_s: float | None


@dataclass(frozen=True, slots=True)
class Insights:
    window_s: float
    deployments: int
    failed_deployments: int
    lead_time_p50_s: float | None
    time_to_restore_p50_s: float | None
    runs: int
    succeeded_runs: int
    failed_runs: int
    stages: list[StageFigures]
    tests_total: int
    tests_flaky: int

    @property
    def deployment_frequency_per_day(self) -> float:
        return self.deployments / (self.window_s / 86400.0)

    @property
    def change_failure_rate(self) -> float | None:
        decided = self.deployments + self.failed_deployments
        return self.failed_deployments / decided if decided else None

    @property
    def success_rate(self) -> float | None:
        decided = self.succeeded_runs + self.failed_runs
        return self.succeeded_runs / decided if decided else None

    @property
    def flaky_rate(self) -> float | None:
        return self.tests_flaky / self.tests_total if self.tests_total else None


_DORA = text(
    """
    SELECT count(*) FILTER (WHERE status = 'succeeded'),
           count(*) FILTER (WHERE status = 'failed'),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY value_s) FILTER (WHERE status = 'succeeded')
    FROM insight_facts
    WHERE project_id = :project_id AND kind = 'deployment' AND at >= now() - make_interval(secs => :window_s) AND (CAST(:environment AS text) IS NULL OR environment = :environment)
    """
)
_DEPLOYMENTS = text(
    """
    SELECT environment, at, status FROM insight_facts
    WHERE project_id = :project_id AND kind = 'deployment' AND at >= now() - make_interval(secs => :window_s) AND (CAST(:environment AS text) IS NULL OR environment = :environment)
    ORDER BY at, member_id
    """
)
_RUNS = text(
    """
    SELECT count(*), count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status = 'failed')
    FROM insight_facts WHERE project_id = :project_id AND kind = 'run' AND at >= now() - make_interval(secs => :window_s)
    """
)
_STAGES = text(
    """
    SELECT stage,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY value_s),
           percentile_cont(0.95) WITHIN GROUP (ORDER BY value_s),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY wait_s),
           percentile_cont(0.95) WITHIN GROUP (ORDER BY wait_s)
    FROM insight_facts WHERE project_id = :project_id AND kind = 'stage' AND at >= now() - make_interval(secs => :window_s)
    GROUP BY stage ORDER BY stage
    """
)
_TESTS = text(
    """
    SELECT coalesce(sum(tests_total), 0), coalesce(sum(tests_flaky), 0)
    FROM insight_facts WHERE project_id = :project_id AND kind = 'tests' AND at >= now() - make_interval(secs => :window_s)
    """
)


async def window(
    session: AsyncSession, project_id: uuid.UUID, window_s: float, environment: str | None = None
) -> Insights:
    """The project's insights over the last `window_s` seconds (DORA figures for one environment
    when `environment` is given)."""
    params: dict[str, Any] = {"project_id": project_id, "window_s": window_s, "environment": environment}
    deployed, failed, lead = (await session.execute(_DORA, params)).one()
    timeline = [(e, at, s) for e, at, s in (await session.execute(_DEPLOYMENTS, params)).all()]
    runs, succeeded, failed_runs = (await session.execute(_RUNS, params)).one()
    stages = [StageFigures(*row) for row in (await session.execute(_STAGES, params)).all()]
    total, flaky = (await session.execute(_TESTS, params)).one()
    return Insights(
        window_s=window_s,
        deployments=deployed,
        failed_deployments=failed,
        lead_time_p50_s=lead,
        time_to_restore_p50_s=percentile(restore_times(timeline), 0.5),
        runs=runs,
        succeeded_runs=succeeded,
        failed_runs=failed_runs,
        stages=stages,
        tests_total=int(total),
        tests_flaky=int(flaky),
    )


async def totals(session: AsyncSession, window_s: float) -> list[tuple[str, str, int]]:
    """Every project's fact counts per kind and status over the window, for `/metrics`."""
    rows = await session.execute(
        text(
            "SELECT kind, status, count(*) FROM insight_facts WHERE at >= now() - make_interval(secs => :window_s) GROUP BY kind, status"
        ),
        {"window_s": window_s},
    )
    return [(kind, status, count) for kind, status, count in rows.all()]


async def newest_write(session: AsyncSession) -> datetime | None:
    """When analytics last wrote a fact (None: never)."""
    newest: datetime | None = (
        await session.execute(text("SELECT max(updated_at) FROM insight_facts"))
    ).scalar_one()
    return newest
