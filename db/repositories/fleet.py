"""The worker fleet and its queues as operators see them: workers with their slots and last
heartbeat, and per pool the queued attempts, the oldest one's wait, and who serves the pool."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# A worker that has not heartbeated for this long is not counted as serving its pool.
STALE_AFTER_S = 30.0

_WORKERS = text(
    """
    SELECT id, pool, labels, concurrency, busy, hostname, pid, status, started_at, last_heartbeat_at,
           extract(epoch FROM now() - last_heartbeat_at) AS silent_s
      FROM workers WHERE status <> 'stopped' OR stopped_at > now() - interval '1 hour'
     ORDER BY pool, id
    """
)
_QUEUES = text(
    """
    WITH queued AS (
        SELECT a.pool, count(*) AS depth, min(a.queued_at) AS oldest_at
          FROM stage_attempts a WHERE a.status = 'queued' GROUP BY a.pool),
    running AS (
        SELECT pool, count(*) AS running FROM stage_attempts WHERE status = 'running' GROUP BY pool),
    serving AS (
        SELECT pool, count(*) AS workers, sum(concurrency) AS slots, sum(busy) AS busy
          FROM workers WHERE status = 'active' AND last_heartbeat_at > now() - make_interval(secs => :stale)
         GROUP BY pool),
    pools AS (SELECT pool FROM queued UNION SELECT pool FROM running UNION SELECT pool FROM serving)
    SELECT p.pool, coalesce(q.depth, 0) AS depth, q.oldest_at,
           extract(epoch FROM now() - q.oldest_at) AS oldest_wait_s,
           coalesce(r.running, 0) AS running, coalesce(s.workers, 0) AS workers,
           coalesce(s.slots, 0) AS slots, coalesce(s.busy, 0) AS busy,
           (SELECT st.name || ' of run ' || a.run_id FROM stage_attempts a JOIN stages st ON st.id = a.stage_id
             WHERE a.pool = p.pool AND a.status = 'queued' ORDER BY a.queued_at LIMIT 1) AS oldest_stage
      FROM pools p LEFT JOIN queued q USING (pool) LEFT JOIN running r USING (pool) LEFT JOIN serving s USING (pool)
     ORDER BY p.pool
    """
)


@dataclass(frozen=True, slots=True)
class WorkerRow:
    id: str
    pool: str
    labels: dict[str, str]
    concurrency: int
    busy: int
    hostname: str
    pid: int
    status: str
    started_at: datetime
    last_heartbeat_at: datetime
    silent_s: float

    @property
    def state(self) -> str:
        if self.status == "active" and self.silent_s > STALE_AFTER_S:
            return "unresponsive"
        return self.status


@dataclass(frozen=True, slots=True)
class QueueRow:
    pool: str
    depth: int
    running: int
    workers: int
    slots: int
    busy: int
    oldest_at: datetime | None
    oldest_wait_s: float | None
    oldest_stage: str | None

    @property
    def reason(self) -> str | None:
        """Why stages of this pool wait, when it is not just a busy fleet."""
        if self.depth and not self.workers:
            return f"no worker serves pool {self.pool!r}: start one with `comet worker --pool {self.pool}`"
        if self.depth and self.busy >= self.slots:
            return f"all {self.slots} slot(s) of pool {self.pool!r} are busy"
        return None


async def list_workers(session: AsyncSession) -> list[WorkerRow]:
    rows = await session.execute(_WORKERS)
    return [WorkerRow(**_fields(r._mapping, WorkerRow)) for r in rows]


async def list_queues(session: AsyncSession) -> list[QueueRow]:
    rows = await session.execute(_QUEUES, {"stale": STALE_AFTER_S})
    return [QueueRow(**_fields(r._mapping, QueueRow)) for r in rows]


def _fields(mapping: Any, cls: type) -> dict[str, Any]:
    names = cls.__dataclass_fields__  # type: ignore[attr-defined]
    out = {k: mapping[k] for k in names}
    for key in ("silent_s", "oldest_wait_s"):
        if key in out and out[key] is not None:
            out[key] = float(out[key])
    for key in ("depth", "running", "workers", "slots", "busy"):
        if key in out:
            out[key] = int(out[key])
    return out
