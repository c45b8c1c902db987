"""Prometheus metrics of the HTTP API (requests by route template and status, latency) and the
`/metrics` exposition. Metrics live in the process-wide registry, so the relay's and any other
component's metrics are served by the same endpoint.

Figures about the whole system (not this process) are read from Postgres at scrape time:
dead letters waiting (neither redriven nor discarded) and the age of the oldest, by consumer and
kind. When the database cannot be read, the last values are served."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api import insight_metrics
from db.repositories.dead_letters import waiting_stats

log = structlog.get_logger(__name__)

REQUESTS = Counter(
    "comet_http_requests_total",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "comet_http_request_duration_seconds",
    "Time to answer an HTTP request (until the response ended), by method and route template.",
    ["method", "route"],
    buckets=(0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


DEAD_LETTERS = Gauge(
    "comet_dead_letters",
    "Dead letters waiting (neither redriven nor discarded), by consumer and kind "
    "(undecodable, handler_failed).",
    ["consumer", "kind"],
)
DEAD_LETTER_AGE = Gauge(
    "comet_dead_letters_oldest_age_seconds",
    "Age of the oldest waiting dead letter, by consumer and kind (absent: none waiting).",
    ["consumer", "kind"],
)


def observe(method: str, route: str, status: int, duration_s: float) -> None:
    REQUESTS.labels(method, route, str(status)).inc()
    LATENCY.labels(method, route).observe(duration_s)


async def refresh_from_database(sessions: async_sessionmaker[AsyncSession]) -> None:
    try:
        async with sessions() as session:
            waiting = await waiting_stats(session)
            await insight_metrics.refresh(session)
    except Exception as exc:
        log.warning("metrics: could not read the database; serving the last values", error=repr(exc))
        return
    now = datetime.now(UTC)
    DEAD_LETTERS.clear()
    DEAD_LETTER_AGE.clear()
    for (consumer, kind), w in waiting.items():
        DEAD_LETTERS.labels(consumer, kind).set(w.count)
        DEAD_LETTER_AGE.labels(consumer, kind).set(max((now - w.oldest_at).total_seconds(), 0.0))


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus text format, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
