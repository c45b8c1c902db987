"""The worker fleet and its queues as operators see them: workers with their slots and last
heartbeat, and per pool the queued attempts, the oldest one's wait, who serves the pool, and the
waiting stages no live worker can take (their labels), with the reason in words."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from schemas.labels import describe

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
# Per pool, in one statement: the attempts waiting for a worker (queued and not in a retry's
# backoff), which of them no live worker could take (none of the pool's live workers has all of
# the attempt's labels: `labels <@ worker.labels`), running attempts, and the live workers' slots.
_QUEUES = text(
    """
    WITH live AS (
        SELECT pool, labels, concurrency, busy FROM workers
         WHERE status = 'active' AND last_heartbeat_at > now() - make_interval(secs => :stale)),
    waiting AS (
        SELECT a.pool, a.queued_at, a.labels, a.stage_id, a.run_id,
               NOT EXISTS (SELECT 1 FROM live w WHERE w.pool = a.pool AND a.labels <@ w.labels) AS stuck
          FROM stage_attempts a
         WHERE a.status = 'queued' AND (a.dispatch_at IS NULL OR a.dispatch_at <= now())),
    queued AS (
        SELECT pool, count(*) AS depth, min(queued_at) AS oldest_at,
               count(*) FILTER (WHERE stuck) AS unschedulable,
               (array_agg(labels ORDER BY queued_at) FILTER (WHERE stuck))[1] AS stuck_labels,
               (array_agg(stage_id ORDER BY queued_at))[1] AS oldest_stage_id,
               (array_agg(run_id ORDER BY queued_at))[1] AS oldest_run_id
          FROM waiting GROUP BY pool),
    running AS (
        SELECT pool, count(*) AS running FROM stage_attempts WHERE status = 'running' GROUP BY pool),
    serving AS (
        SELECT pool, count(*) AS workers, sum(concurrency) AS slots, sum(busy) AS busy FROM live GROUP BY pool),
    pools AS (SELECT pool FROM queued UNION SELECT pool FROM running UNION SELECT pool FROM serving)
    SELECT p.pool, coalesce(q.depth, 0) AS depth, q.oldest_at,
           extract(epoch FROM now() - q.oldest_at) AS oldest_wait_s,
           coalesce(r.running, 0) AS running, coalesce(s.workers, 0) AS workers,
           coalesce(s.slots, 0) AS slots, coalesce(s.busy, 0) AS busy,
           coalesce(q.unschedulable, 0) AS unschedulable, q.stuck_labels,
           (SELECT st.name || ' of run ' || q.oldest_run_id FROM stages st WHERE st.id = q.oldest_stage_id)
               AS oldest_stage
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
    # Waiting attempts no live worker of the pool could take, and the labels of the oldest of them.
    unschedulable: int = 0
    stuck_labels: dict[str, str] | None = None

    @property
    def reason(self) -> str | None:
        """Why stages of this pool wait, when it is not just a busy fleet."""
        if self.depth and not self.workers:
            return f"no live worker in pool {self.pool}: start one with `comet worker --pool {self.pool}`"
        if self.unschedulable:
            wanted = describe(self.stuck_labels or {})
            return (
                f"no live worker in pool {self.pool} has {wanted} "
                f"({self.unschedulable} waiting stage(s)): start one with "
                f"`comet worker --pool {self.pool} --labels {wanted}`"
            )
        if self.depth and self.busy >= self.slots:
            return f"all {self.slots} slot(s) of pool {self.pool} are busy"
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
    for key in ("depth", "running", "workers", "slots", "busy", "unschedulable"):
        if key in out:
            out[key] = int(out[key])
    return out
