"""Stage attempts as workers and the lease reaper touch them: claim with a lease and a fresh
fencing token, heartbeat, log chunks, finish, and reaping of expired leases.

Every write after the claim is guarded by `fencing_token` and `status = 'running'`: a worker that
lost its lease (paused, partitioned) cannot change anything any more. The result itself is written
by the projection of its `attempt.finished` event under the same guard (`db/projection.py`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# A claim is one statement: the attempts taken (each with a fresh fencing token and a lease) and
# everything their stages need to run, joined in the same round trip.
_TAKE = """
    UPDATE stage_attempts a SET status = 'running', worker_id = :worker_id,
           fencing_token = nextval('fencing_token_seq'),
           lease_expires_at = now() + make_interval(secs => :lease_s),
           heartbeat_at = now(), started_at = now()
"""
_WITH_DETAILS = """
    SELECT c.id, c.run_id, c.stage_id, c.number, c.fencing_token, c.started_at,
           s.name AS stage, s.spec, s.matrix, s.pool, r.ref, r.sha, r.variables, r.number AS run_number,
           r.trigger, p.id AS project_id, p.name AS project, p.repo_url
      FROM claimed c JOIN stages s ON s.id = c.stage_id JOIN runs r ON r.id = c.run_id
      JOIN projects p ON p.id = r.project_id
     ORDER BY c.queued_at, c.id
"""
_RETURNING = "RETURNING a.id, a.run_id, a.stage_id, a.number, a.fencing_token, a.started_at, a.queued_at"
_CLAIM = text(
    f"""
    WITH claimed AS (
    {_TAKE}
     WHERE a.id = ANY(:attempt_ids) AND a.status = 'queued' AND a.labels <@ CAST(:labels AS jsonb)
    {_RETURNING})
    {_WITH_DETAILS}
    """
)
# The oldest attempts of a pool queued for longer than `older_than_s` whose dispatch no worker
# took, locked as they are picked (another worker skips them), then claimed.
_CLAIM_STALE = text(
    f"""
    WITH picked AS (
        SELECT id FROM stage_attempts
         WHERE status = 'queued' AND pool = :pool AND dispatch_at IS NULL
           AND queued_at < now() - make_interval(secs => :older_than_s)
           AND labels <@ CAST(:labels AS jsonb)
         ORDER BY queued_at LIMIT :limit FOR UPDATE SKIP LOCKED),
    claimed AS (
    {_TAKE}
      FROM picked WHERE a.id = picked.id AND a.status = 'queued'
    {_RETURNING})
    {_WITH_DETAILS}
    """  # noqa: S608 - composed of the constants above only
)


@dataclass(frozen=True, slots=True)
class Claim:
    attempt_id: uuid.UUID
    run_id: uuid.UUID
    stage_id: uuid.UUID
    stage: str
    number: int
    fencing_token: int
    started_at: datetime
    spec: dict[str, Any]
    matrix: dict[str, str]
    pool: str
    ref: str
    sha: str
    variables: dict[str, str]
    trigger: dict[str, Any]
    project_id: uuid.UUID
    project: str
    repo_url: str
    run_number: int


async def claim_many(
    session: AsyncSession,
    attempt_ids: Sequence[uuid.UUID],
    worker_id: str,
    lease_s: float,
    labels: Mapping[str, str] | None = None,
) -> list[Claim]:
    """Take every attempt still queued whose labels the worker has (`labels`; one statement,
    however many); the others were claimed by someone else, finished, or cancelled, or wait for a
    worker with their labels. Each claim draws its own fencing token. In the order asked for."""
    if not attempt_ids:
        return []
    params = {
        "attempt_ids": list(attempt_ids),
        "worker_id": worker_id,
        "lease_s": lease_s,
        "labels": orjson.dumps(dict(labels or {})).decode(),
    }
    claims = [_claim(row) for row in await session.execute(_CLAIM, params)]
    order = {attempt_id: i for i, attempt_id in enumerate(attempt_ids)}
    return sorted(claims, key=lambda c: order[c.attempt_id])


def _claim(row: Any) -> Claim:
    return Claim(
        attempt_id=row.id,
        run_id=row.run_id,
        stage_id=row.stage_id,
        stage=row.stage,
        number=row.number,
        fencing_token=row.fencing_token,
        started_at=row.started_at,
        spec=row.spec,
        matrix=row.matrix,
        pool=row.pool,
        ref=row.ref,
        sha=row.sha or "",
        variables=row.variables,
        trigger=row.trigger,
        project_id=row.project_id,
        project=row.project,
        repo_url=row.repo_url,
        run_number=row.run_number,
    )


async def claim_stale(
    session: AsyncSession,
    pool: str,
    worker_id: str,
    lease_s: float,
    *,
    older_than_s: float,
    limit: int,
    labels: Mapping[str, str] | None = None,
) -> list[Claim]:
    """Claim the oldest attempts of `pool` queued for longer than `older_than_s` whose labels are
    all among the worker's `labels` and whose dispatch no worker took (it sits in a dead worker's
    partition, Kafka is down, or the dispatch reached a worker without the labels): Postgres is
    the source of truth, the dispatch event only the fast path."""
    params = {
        "pool": pool,
        "older_than_s": older_than_s,
        "limit": limit,
        "labels": orjson.dumps(dict(labels or {})).decode(),
        "worker_id": worker_id,
        "lease_s": lease_s,
    }
    return [_claim(row) for row in await session.execute(_CLAIM_STALE, params)]


_HEARTBEAT = text(
    """
    UPDATE stage_attempts a SET lease_expires_at = now() + make_interval(secs => :lease_s), heartbeat_at = now()
      FROM unnest(CAST(:ids AS uuid[]), CAST(:tokens AS bigint[])) AS h(id, token)
     WHERE a.id = h.id AND a.fencing_token = h.token AND a.status = 'running'
    RETURNING a.id, a.cancel_requested
    """
)


@dataclass(frozen=True, slots=True)
class HeldLease:
    attempt_id: uuid.UUID
    cancel_requested: bool


async def heartbeat(
    session: AsyncSession, leases: Sequence[tuple[uuid.UUID, int]], lease_s: float
) -> dict[uuid.UUID, HeldLease]:
    """Extend the leases still held; an attempt missing from the result has lost its lease."""
    if not leases:
        return {}
    rows = await session.execute(
        _HEARTBEAT, {"ids": [a for a, _ in leases], "tokens": [t for _, t in leases], "lease_s": lease_s}
    )
    return {r.id: HeldLease(r.id, r.cancel_requested) for r in rows}


_LOG = text(
    """
    INSERT INTO log_chunks (attempt_id, seq, data)
    SELECT :attempt_id, :seq, :data WHERE EXISTS (
        SELECT 1 FROM stage_attempts WHERE id = :attempt_id AND fencing_token = :token AND status = 'running')
    ON CONFLICT DO NOTHING
    RETURNING seq
    """
)
_LOG_BYTES = text(
    "UPDATE stage_attempts SET log_bytes = log_bytes + :n, log_truncated = log_truncated OR :truncated "
    "WHERE id = :attempt_id AND fencing_token = :token"
)


async def append_log(
    session: AsyncSession, attempt_id: uuid.UUID, token: int, seq: int, data: str, *, truncated: bool = False
) -> bool:
    """Store one chunk; False when the lease is gone (the chunk is dropped)."""
    row = (
        await session.execute(_LOG, {"attempt_id": attempt_id, "seq": seq, "data": data, "token": token})
    ).one_or_none()
    if row is None:
        return False
    await session.execute(
        _LOG_BYTES,
        {"n": len(data.encode()), "truncated": truncated, "attempt_id": attempt_id, "token": token},
    )
    return True


# Expired leases, locked (another reaper skips them); the reaper writes them lost through the
# projection of the `attempt.finished` events it emits (db/projection.py).
_EXPIRED = text(
    """
    SELECT a.id, a.run_id, a.stage_id, s.name AS stage, a.number, a.worker_id,
           'worker ' || coalesce(a.worker_id, '?') || ' stopped renewing its lease' AS failure_reason,
           a.started_at, now() AS finished_at
      FROM stage_attempts a JOIN stages s ON s.id = a.stage_id
     WHERE a.id IN (SELECT id FROM stage_attempts WHERE status = 'running' AND lease_expires_at < now()
                    ORDER BY lease_expires_at LIMIT :limit FOR UPDATE SKIP LOCKED)
    """
)


@dataclass(frozen=True, slots=True)
class LostAttempt:
    attempt_id: uuid.UUID
    run_id: uuid.UUID
    stage_id: uuid.UUID
    stage: str
    number: int
    worker_id: str | None
    reason: str
    started_at: datetime | None
    finished_at: datetime


async def expired_leases(session: AsyncSession, limit: int = 500) -> list[LostAttempt]:
    """Running attempts whose lease expired, locked for this transaction (each seen by one reaper)."""
    rows = await session.execute(_EXPIRED, {"limit": limit})
    return [
        LostAttempt(
            r.id,
            r.run_id,
            r.stage_id,
            r.stage,
            r.number,
            r.worker_id,
            r.failure_reason,
            r.started_at,
            r.finished_at,
        )
        for r in rows
    ]


_STARTED_WITHIN = text("SELECT now() - pg_postmaster_start_time() < make_interval(secs => :s)")


async def database_started_within(session: AsyncSession, seconds: float) -> bool:
    """Whether the Postgres server started less than `seconds` ago (after a restart, no heartbeat
    could be written while it was down)."""
    return bool((await session.execute(_STARTED_WITHIN, {"s": seconds})).scalar_one())


# Retries whose backoff has passed, locked; the reaper's `attempt.dispatched` events clear their
# `dispatch_at` through the projection.
_DUE_RETRIES = text(
    """
    SELECT a.id, a.run_id, a.stage_id, s.name AS stage, a.number, a.pool
      FROM stage_attempts a JOIN stages s ON s.id = a.stage_id
     WHERE a.id IN (SELECT id FROM stage_attempts WHERE status = 'queued' AND dispatch_at <= now()
                    ORDER BY dispatch_at LIMIT :limit FOR UPDATE SKIP LOCKED)
    """
)


@dataclass(frozen=True, slots=True)
class DueAttempt:
    attempt_id: uuid.UUID
    run_id: uuid.UUID
    stage_id: uuid.UUID
    stage: str
    number: int
    pool: str


async def due_retries(session: AsyncSession, limit: int = 500) -> list[DueAttempt]:
    """Queued attempts whose retry backoff has passed, locked for this transaction (each seen by
    one reaper; once its dispatch is applied, never again)."""
    rows = await session.execute(_DUE_RETRIES, {"limit": limit})
    return [DueAttempt(r.id, r.run_id, r.stage_id, r.stage, r.number, r.pool) for r in rows]
