"""Prometheus metrics of the HTTP API (requests by route template and status, latency) and the
`/metrics` exposition. Metrics live in the process-wide registry, so the relay's and any other
component's metrics are served by the same endpoint.

Figures about the whole system (not this process) are read from Postgres at scrape time:
dead letters waiting, by consumer and kind. When the database cannot be read, the last values
are served."""

from __future__ import annotations

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.repositories.dead_letters import waiting_counts

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
    "Events set aside and not redriven, by consumer and kind (undecodable, handler_failed).",
    ["consumer", "kind"],
)


def observe(method: str, route: str, status: int, duration_s: float) -> None:
    REQUESTS.labels(method, route, str(status)).inc()
    LATENCY.labels(method, route).observe(duration_s)


async def refresh_from_database(sessions: async_sessionmaker[AsyncSession]) -> None:
    try:
        async with sessions() as session:
            counts = await waiting_counts(session)
    except Exception as exc:
        log.warning("metrics: could not read the database; serving the last values", error=repr(exc))
        return
    DEAD_LETTERS.clear()
    for (consumer, kind), count in counts.items():
        DEAD_LETTERS.labels(consumer, kind).set(count)


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus text format, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
