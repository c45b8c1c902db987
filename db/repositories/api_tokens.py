"""Personal API tokens: created for a user with scopes and an optional expiry, stored only as the
SHA-256 of the token, found by that hash, revoked, and their last use noted.

The token itself (`comet_pat_` + 32 random bytes) has enough entropy that a plain SHA-256 is the
right storage (no salt or slow hash needed: nothing to brute-force). Functions never commit.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import ApiToken, User

TOKEN_PREFIX = "comet_pat_"
SHOWN_PREFIX_CHARS = 16  # `comet_pat_` + 6 random characters: enough to recognise a token in a list
TOUCH_EVERY = timedelta(seconds=60)


def new_token() -> tuple[str, str]:
    """A fresh token and the hash to store."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def looks_like_api_token(token: str) -> bool:
    return token.startswith(TOKEN_PREFIX)


async def create(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    name: str,
    scopes: Sequence[str],
    expires_at: datetime | None,
) -> tuple[ApiToken, str]:
    """Insert a token; returns the row and the token in plain text (the only time it exists)."""
    token, hashed = new_token()
    row = ApiToken(
        user_id=user_id,
        name=name,
        prefix=token[:SHOWN_PREFIX_CHARS],
        token_hash=hashed,
        scopes=sorted(set(scopes)),
        expires_at=expires_at,
    )
    session.add(row)
    await session.flush()
    return row, token


async def list_for_user(
    session: AsyncSession, user_id: uuid.UUID, *, include_revoked: bool = False
) -> Sequence[ApiToken]:
    stmt = select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id.desc())
    if not include_revoked:
        stmt = stmt.where(ApiToken.revoked_at.is_(None))
    return (await session.scalars(stmt)).all()


async def revoke(session: AsyncSession, *, user_id: uuid.UUID, token_id: uuid.UUID, now: datetime) -> bool:
    """Revoke the user's token; False when they have no such (unrevoked) token."""
    result = await session.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id, ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return bool(getattr(result, "rowcount", 0))


async def revoke_all(session: AsyncSession, user_id: uuid.UUID, *, now: datetime) -> int:
    result = await session.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True, slots=True)
class LiveToken:
    token: ApiToken
    user: User


async def authenticate(session: AsyncSession, presented: str, *, now: datetime) -> LiveToken | None:
    """The token and its active user, if `presented` is a live token (not revoked nor expired)."""
    stmt = (
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(
            ApiToken.token_hash == token_hash(presented),
            ApiToken.revoked_at.is_(None),
            (ApiToken.expires_at.is_(None)) | (ApiToken.expires_at > now),
            User.is_active.is_(True),
        )
    )
    row = (await session.execute(stmt)).one_or_none()
    return None if row is None else LiveToken(row[0], row[1])


async def touch(session: AsyncSession, token_id: uuid.UUID, *, now: datetime) -> bool:
    """Note a use of the token, at most once a minute (a write per request would be wasteful)."""
    result = await session.execute(
        update(ApiToken)
        .where(
            ApiToken.id == token_id,
            (ApiToken.last_used_at.is_(None)) | (ApiToken.last_used_at < now - TOUCH_EVERY),
        )
        .values(last_used_at=now)
    )
    return bool(getattr(result, "rowcount", 0))
