"""The dashboard's one-time OAuth hand-off codes (decision 0032): a row per code, holding only the
code's SHA-256 hash and the session the OAuth callback opened. Spending a code is one UPDATE that
succeeds once; handing the session over swaps its refresh-token hash for a fresh one nobody else
has seen. Functions never commit."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AuthSession, OAuthHandoff, User

KEEP_SPENT = timedelta(days=1)  # rows outlive their 60 s so a reuse is told apart from a forgery


async def create(
    session: AsyncSession,
    *,
    handoff_id: uuid.UUID,
    session_id: uuid.UUID,
    code_hash: str,
    expires_at: datetime,
) -> OAuthHandoff:
    """Add the code's row, and drop rows that expired more than a day ago."""
    await session.execute(delete(OAuthHandoff).where(OAuthHandoff.expires_at < expires_at - KEEP_SPENT))
    row = OAuthHandoff(id=handoff_id, session_id=session_id, code_hash=code_hash, expires_at=expires_at)
    session.add(row)
    await session.flush()
    return row


async def get(session: AsyncSession, handoff_id: uuid.UUID) -> OAuthHandoff | None:
    return await session.get(OAuthHandoff, handoff_id)


async def spend(session: AsyncSession, handoff_id: uuid.UUID, *, now: datetime) -> uuid.UUID | None:
    """Mark the code used if it is unused and unexpired, in one statement: its session's id, or None
    when it was spent already (also by a concurrent request) or has expired."""
    stmt = (
        update(OAuthHandoff)
        .where(
            OAuthHandoff.id == handoff_id,
            OAuthHandoff.used_at.is_(None),
            OAuthHandoff.expires_at > now,
        )
        .values(used_at=now)
        .returning(OAuthHandoff.session_id)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def hand_over(
    session: AsyncSession, session_id: uuid.UUID, *, new_hash: str, now: datetime
) -> AuthSession | None:
    """Give the live session of an active user the refresh-token hash `new_hash`; None if the
    session has ended or its user is disabled since the callback."""
    stmt = (
        update(AuthSession)
        .where(
            AuthSession.id == session_id,
            AuthSession.revoked_at.is_(None),
            AuthSession.expires_at > now,
            select(User.id).where(User.id == AuthSession.user_id, User.is_active.is_(True)).exists(),
        )
        .values(refresh_token_hash=new_hash, rotated_at=now)
        .returning(AuthSession)
    )
    return (await session.scalars(stmt)).one_or_none()
