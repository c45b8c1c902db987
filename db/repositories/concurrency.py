"""Concurrency groups in the database: the group lock and the group's unfinished runs."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from orchestrator.concurrency import GroupMember
from schemas.states import RunStatus

_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:group, 7))")
_MEMBERS = text(
    "SELECT id, status, waiting_for_group FROM runs "
    "WHERE concurrency_group = :group AND status IN ('queued', 'running') ORDER BY id"
)


async def lock_groups(session: AsyncSession, groups: Iterable[str]) -> None:
    """Serialise admission and release per group until commit (sorted: no deadlocks)."""
    for group in sorted(set(groups)):
        await session.execute(_LOCK, {"group": group})


async def unfinished_members(session: AsyncSession, group: str) -> list[GroupMember]:
    rows = await session.execute(_MEMBERS, {"group": group})
    return [GroupMember(r.id, RunStatus(r.status), r.waiting_for_group) for r in rows]
