"""The signals to scale workers on, per pool (docs/decisions/0026): queued and running stages, the
oldest wait, the pool's dispatch consumer lag, busy and total slots, and whether a waiting stage
can be scheduled at all. One query on Postgres and one lag probe on Kafka, shared by `GET /queues`
and the Prometheus gauges of `/metrics` (`comet_queue_*{pool="…"}`), which are read at most once
a second however often they are scraped (KEDA and Prometheus may both poll)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import structlog
from prometheus_client import Gauge
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.repositories.fleet import QueueRow, list_queues
from events.lag import dispatch_lag
from events.topics import Topics

log = structlog.get_logger(__name__)

CACHE_S = 1.0
LAG_TIMEOUT_S = 2.0

QUEUED = Gauge(
    "comet_queue_queued_stages",
    "Stage attempts waiting for a worker of the pool (not in a retry's backoff).",
    ["pool"],
)
RUNNING = Gauge("comet_queue_running_stages", "Stage attempts running on workers of the pool.", ["pool"])
OLDEST_WAIT = Gauge(
    "comet_queue_oldest_wait_seconds",
    "How long the oldest waiting stage of the pool has waited (0: none).",
    ["pool"],
)
LAG = Gauge(
    "comet_queue_consumer_lag",
    "Dispatch events of the pool its workers' consumer group has not read (absent: Kafka did not say).",
    ["pool"],
)
BUSY = Gauge(
    "comet_queue_busy_slots", "Busy slots of the pool's live workers (as of their last heartbeat).", ["pool"]
)
TOTAL = Gauge("comet_queue_total_slots", "Slots of the pool's live workers.", ["pool"])
UNSCHEDULABLE = Gauge(
    "comet_queue_unschedulable",
    "1 when a waiting stage of the pool can be taken by no live worker (none in the pool, or none "
    "with all of its labels), else 0.",
    ["pool"],
)
UNSCHEDULABLE_STAGES = Gauge(
    "comet_queue_unschedulable_stages", "Waiting stages of the pool no live worker can take.", ["pool"]
)
_GAUGES = (QUEUED, RUNNING, OLDEST_WAIT, LAG, BUSY, TOTAL, UNSCHEDULABLE, UNSCHEDULABLE_STAGES)


@dataclass(frozen=True, slots=True)
class PoolSignals:
    queue: QueueRow
    lag: int | None


async def read_signals(
    sessions: async_sessionmaker[AsyncSession], bootstrap_servers: str, topics: Topics
) -> list[PoolSignals]:
    """Every pool's figures, read now."""
    async with sessions() as session:
        rows = await list_queues(session)
    lag = await dispatch_lag(bootstrap_servers, topics, [q.pool for q in rows], timeout_s=LAG_TIMEOUT_S)
    return [PoolSignals(q, lag.get(q.pool)) for q in rows]


class QueueGauges:
    """The `comet_queue_*` gauges, refreshed from `read_signals` at most every `CACHE_S`."""

    def __init__(self, cache_s: float = CACHE_S) -> None:
        self._cache_s = cache_s
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()

    async def refresh(
        self, sessions: async_sessionmaker[AsyncSession], bootstrap_servers: str, topics: Topics
    ) -> None:
        async with self._lock:  # concurrent scrapes share one read
            if time.monotonic() - self._read_at < self._cache_s:
                return
            try:
                signals = await read_signals(sessions, bootstrap_servers, topics)
            except Exception as exc:
                log.warning("metrics: could not read the queues; serving the last values", error=repr(exc))
                return
            self._read_at = time.monotonic()
            set_gauges(signals)


def set_gauges(signals: list[PoolSignals]) -> None:
    for gauge in _GAUGES:
        gauge.clear()  # a pool with nothing queued, running or serving any more disappears
    for s in signals:
        q = s.queue
        QUEUED.labels(q.pool).set(q.depth)
        RUNNING.labels(q.pool).set(q.running)
        OLDEST_WAIT.labels(q.pool).set(q.oldest_wait_s or 0.0)
        if s.lag is not None:
            LAG.labels(q.pool).set(s.lag)
        BUSY.labels(q.pool).set(q.busy)
        TOTAL.labels(q.pool).set(q.slots)
        UNSCHEDULABLE.labels(q.pool).set(1 if q.unschedulable else 0)
        UNSCHEDULABLE_STAGES.labels(q.pool).set(q.unschedulable)


GAUGES = QueueGauges()
