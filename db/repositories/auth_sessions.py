"""Login sessions: each is a family of rotating refresh tokens, stored only as SHA-256 hashes.

Rotation moves the presented hash into `previous_token_hashes`; presenting one of those again
means the token was stolen or replayed, and the whole family is revoked. Functions never commit.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AuthSession, User

REUSE_REASON = "refresh token reused"


async def create_session(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    token_hash: str,
    expires_at: datetime,
    user_agent: str | None = None,
    client_ip: str | None = None,
    method: str = "password",
) -> AuthSession:
    row = AuthSession(
        user_id=user_id,
        refresh_token_hash=token_hash,
        expires_at=expires_at,
        user_agent=(user_agent or "")[:400] or None,
        client_ip=(client_ip or "")[:64] or None,
        method=method[:32],
    )
    session.add(row)
    await session.flush()
    return row


class RotationOutcome(enum.Enum):
    ROTATED = "rotated"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REVOKED = "revoked"
    REUSED = "reused"
    USER_INACTIVE = "user_inactive"


@dataclass(frozen=True, slots=True)
class Rotation:
    outcome: RotationOutcome
    auth_session: AuthSession | None = None


async def rotate(session: AsyncSession, *, presented_hash: str, new_hash: str, now: datetime) -> Rotation:
    """Swap the presented refresh token for `new_hash` if it is the family's current one.

    A token that was current once but has been rotated since revokes its family (`REUSED`).
    """
    current = (
        await session.scalars(
            select(AuthSession).where(AuthSession.refresh_token_hash == presented_hash).with_for_update()
        )
    ).one_or_none()
    if current is None:
        family = (
            await session.scalars(
                select(AuthSession)
                # `@>` (array containment) so the GIN index on previous_token_hashes serves it.
                .where(AuthSession.previous_token_hashes.contains([presented_hash]))
                .with_for_update()
            )
        ).one_or_none()
        if family is None:
            return Rotation(RotationOutcome.UNKNOWN)
        if family.revoked_at is None:
            family.revoked_at = now
            family.revoked_reason = REUSE_REASON
        return Rotation(RotationOutcome.REUSED, family)
    if current.revoked_at is not None:
        return Rotation(RotationOutcome.REVOKED, current)
    if current.expires_at <= now:
        return Rotation(RotationOutcome.EXPIRED, current)
    active = await session.scalar(select(User.is_active).where(User.id == current.user_id))
    if not active:
        return Rotation(RotationOutcome.USER_INACTIVE, current)
    current.previous_token_hashes = [*current.previous_token_hashes, presented_hash]
    current.refresh_token_hash = new_hash
    current.rotated_at = now
    await session.flush()
    return Rotation(RotationOutcome.ROTATED, current)


async def revoke(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    now: datetime,
    session_id: uuid.UUID | None = None,
    token_hash: str | None = None,
    reason: str = "logout",
) -> int:
    """Revoke the user's session named by id or by current refresh-token hash; returns how many."""
    if session_id is None and token_hash is None:
        return 0
    stmt = update(AuthSession).where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
    if session_id is not None and token_hash is not None:
        stmt = stmt.where((AuthSession.id == session_id) | (AuthSession.refresh_token_hash == token_hash))
    elif session_id is not None:
        stmt = stmt.where(AuthSession.id == session_id)
    else:
        stmt = stmt.where(AuthSession.refresh_token_hash == token_hash)
    result = await session.execute(stmt.values(revoked_at=now, revoked_reason=reason))
    return int(getattr(result, "rowcount", 0) or 0)


async def active_user(
    session: AsyncSession, user_id: uuid.UUID, *, session_id: uuid.UUID | None, now: datetime
) -> User | None:
    """The user if active and, when the token names a session, that session is still live."""
    stmt = select(User).where(User.id == user_id, User.is_active.is_(True))
    if session_id is not None:
        stmt = stmt.where(
            select(AuthSession.id)
            .where(
                AuthSession.id == session_id,
                AuthSession.user_id == user_id,
                AuthSession.revoked_at.is_(None),
                AuthSession.expires_at > now,
            )
            .exists()
        )
    return (await session.scalars(stmt)).one_or_none()


async def list_for_user(
    session: AsyncSession, user_id: uuid.UUID, *, now: datetime, include_ended: bool = False
) -> Sequence[AuthSession]:
    """The user's sessions, newest first: live ones only unless `include_ended`."""
    stmt = select(AuthSession).where(AuthSession.user_id == user_id).order_by(AuthSession.id.desc())
    if not include_ended:
        stmt = stmt.where(AuthSession.revoked_at.is_(None), AuthSession.expires_at > now)
    return (await session.scalars(stmt)).all()


async def revoke_all(session: AsyncSession, user_id: uuid.UUID, *, now: datetime, reason: str) -> int:
    """End every live session of the user (password change, deactivation)."""
    result = await session.execute(
        update(AuthSession)
        .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
    )
    return int(getattr(result, "rowcount", 0) or 0)
