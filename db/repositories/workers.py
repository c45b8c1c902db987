"""The workers table: a worker registers at start, heartbeats its slot usage, and leaves."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_REGISTER = text(
    """
    INSERT INTO workers (id, pool, labels, concurrency, busy, hostname, pid, status, started_at, last_heartbeat_at)
    VALUES (:id, :pool, CAST(:labels AS jsonb), :concurrency, 0, :hostname, :pid, 'active', now(), now())
    ON CONFLICT (id) DO UPDATE SET status = 'active', last_heartbeat_at = now(), stopped_at = NULL
    """
)
_BEAT = text("UPDATE workers SET busy = :busy, status = :status, last_heartbeat_at = now() WHERE id = :id")
_LEAVE = text("UPDATE workers SET busy = 0, status = 'stopped', stopped_at = now() WHERE id = :id")


async def register(
    session: AsyncSession,
    *,
    worker_id: str,
    pool: str,
    labels_json: str,
    concurrency: int,
    hostname: str,
    pid: int,
) -> None:
    await session.execute(
        _REGISTER,
        {
            "id": worker_id,
            "pool": pool,
            "labels": labels_json,
            "concurrency": concurrency,
            "hostname": hostname,
            "pid": pid,
        },
    )


async def beat(session: AsyncSession, worker_id: str, *, busy: int, status: str) -> None:
    await session.execute(_BEAT, {"id": worker_id, "busy": busy, "status": status})


async def leave(session: AsyncSession, worker_id: str) -> None:
    await session.execute(_LEAVE, {"id": worker_id})
