"""Commit status reports: queued per run state change, sent with backoff, superseded by newer
states of the same run (so a slow retry never sets an older state over a newer one)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from db.crypto import SecretBox
from db.models import CommitStatusReport, Integration, Project, Run

INTEGRATION_KIND = "commit_status"


@dataclass(frozen=True, slots=True)
class Target:
    provider: str
    repo: str
    sha: str
    api_url: str | None
    token: str
    pipeline: str


def _context(project_id: uuid.UUID) -> bytes:
    return f"integration:{project_id}:{INTEGRATION_KIND}".encode()


def encrypt_token(box: SecretBox, project_id: uuid.UUID, token: str) -> bytes:
    return box.encrypt(token.encode(), context=_context(project_id))


async def targets_for(
    session: AsyncSession, box: SecretBox, run_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Target]:
    """Where to report each of these runs, in one query; a run with nowhere to be reported (no
    commit yet, not a hosted repository, no enabled integration with a token) is absent."""
    if not run_ids:
        return {}
    rows = await session.execute(
        select(
            Run.id.label("run_id"),
            Run.sha,
            Run.pipeline_name,
            Project.id,
            Project.provider,
            Project.provider_repo,
            Integration,
        )
        .join(Project, Project.id == Run.project_id)
        .join(Integration, (Integration.project_id == Project.id) & (Integration.kind == INTEGRATION_KIND))
        .where(Run.id.in_(set(run_ids)), Integration.enabled.is_(True))
    )
    found: dict[uuid.UUID, Target] = {}
    for row in rows:
        if not row.sha or not row.provider_repo or row.Integration.secret_ciphertext is None:
            continue
        found[row.run_id] = Target(
            provider=row.provider,
            repo=row.provider_repo,
            sha=row.sha,
            api_url=row.Integration.config.get("api_url"),
            token=box.decrypt(row.Integration.secret_ciphertext, context=_context(row.id)).decode(),
            pipeline=row.pipeline_name or "pipeline",
        )
    return found


async def target_for(session: AsyncSession, box: SecretBox, run_id: uuid.UUID) -> Target | None:
    """Where to report this run, or None (see `targets_for`)."""
    return (await targets_for(session, box, [run_id])).get(run_id)


_SUPERSEDE = text(
    "UPDATE commit_status_reports SET status = 'superseded' WHERE run_id = :run_id AND status = 'pending'"
)


async def enqueue(
    session: AsyncSession, *, run_id: uuid.UUID, provider: str, state: str, request: dict[str, Any]
) -> None:
    await session.execute(_SUPERSEDE, {"run_id": run_id})
    session.add(
        CommitStatusReport(run_id=run_id, provider=provider, state=state, request=request, status="pending")
    )
    # Written now, so the next state of the same run queued in this transaction supersedes it
    # (sessions do not autoflush): a batch holding queued, running and succeeded must leave
    # only succeeded to send, never an older state delivered after it.
    await session.flush()


_DUE = text(
    """
    SELECT id, run_id, provider, request, attempts FROM commit_status_reports
     WHERE status = 'pending' AND next_attempt_at <= now()
     ORDER BY next_attempt_at LIMIT :limit FOR UPDATE SKIP LOCKED
    """
)
_DONE = text(
    "UPDATE commit_status_reports SET status = 'delivered', attempts = attempts + 1, http_status = :http_status, "
    "error = NULL, delivered_at = now() WHERE id = :id"
)
_FAILED = text(
    "UPDATE commit_status_reports SET attempts = attempts + 1, http_status = :http_status, error = :error, "
    "status = CASE WHEN attempts + 1 >= :max THEN 'failed' ELSE 'pending' END, "
    "next_attempt_at = now() + make_interval(secs => :delay) WHERE id = :id"
)


async def due(session: AsyncSession, limit: int = 50) -> list[Any]:
    return list((await session.execute(_DUE, {"limit": limit})).all())


async def mark_delivered(session: AsyncSession, report_id: uuid.UUID, http_status: int) -> None:
    await session.execute(_DONE, {"id": report_id, "http_status": http_status})


async def mark_failed(
    session: AsyncSession,
    report_id: uuid.UUID,
    *,
    http_status: int | None,
    error: str,
    delay_s: float,
    max_attempts: int,
) -> None:
    await session.execute(
        _FAILED,
        {
            "id": report_id,
            "http_status": http_status,
            "error": error[:2000],
            "delay": delay_s,
            "max": max_attempts,
        },
    )


async def reports_for_run(session: AsyncSession, run_id: uuid.UUID) -> list[CommitStatusReport]:
    rows = await session.scalars(
        select(CommitStatusReport)
        .where(CommitStatusReport.run_id == run_id)
        .order_by(CommitStatusReport.created_at)
    )
    return list(rows.all())
