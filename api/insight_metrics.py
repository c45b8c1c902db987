"""A few insight figures on the API's `/metrics`, read at scrape time from what `comet analytics`
wrote (docs/decisions/0025): facts of the last 24 hours by kind and status (runs finished,
stages timed, deployments finished, attempts with test reports), and how long ago analytics last
wrote one."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import Gauge
from sqlalchemy.ext.asyncio import AsyncSession

from db.repositories import insights

DAY_S = 86400.0

FACTS = Gauge(
    "comet_insight_facts_24h",
    "Insight facts of the last 24 h by kind (run, stage, deployment, tests) and status, as comet "
    "analytics wrote them (runs finished, stages timed, deployments finished).",
    ["kind", "status"],
)
NEWEST_WRITE_AGE = Gauge(
    "comet_insights_last_write_age_seconds",
    "Seconds since comet analytics last wrote an insight fact (absent: never).",
)


async def refresh(session: AsyncSession) -> None:
    totals = await insights.totals(session, DAY_S)
    newest = await insights.newest_write(session)
    FACTS.clear()
    for kind, status, count in totals:
        FACTS.labels(kind, status).set(count)
    if newest is not None:
        NEWEST_WRITE_AGE.set(max((datetime.now(UTC) - newest).total_seconds(), 0.0))
