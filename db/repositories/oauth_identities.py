"""Links between Comet users and their GitHub, GitLab or Bitbucket accounts. Functions never commit."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import OAuthIdentity, User
from db.repositories.errors import AlreadyExistsError


async def find_user(session: AsyncSession, provider: str, provider_user_id: str) -> User | None:
    """The user linked to this provider account, if any."""
    stmt = (
        select(User)
        .join(OAuthIdentity, OAuthIdentity.user_id == User.id)
        .where(OAuthIdentity.provider == provider, OAuthIdentity.provider_user_id == provider_user_id)
    )
    return (await session.scalars(stmt)).one_or_none()


async def link(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    provider: str,
    provider_user_id: str,
    login: str | None,
    email: str | None,
) -> OAuthIdentity:
    """Link the provider account to the user; `AlreadyExistsError` if it is linked already."""
    row = OAuthIdentity(
        user_id=user_id,
        provider=provider,
        provider_user_id=provider_user_id[:128],
        provider_login=(login or "")[:200] or None,
        email=(email or "")[:320] or None,
    )
    try:
        async with session.begin_nested():
            session.add(row)
    except IntegrityError:
        raise AlreadyExistsError(f"this {provider} account is linked already") from None
    return row


async def list_for_user(session: AsyncSession, user_id: uuid.UUID) -> list[OAuthIdentity]:
    stmt = select(OAuthIdentity).where(OAuthIdentity.user_id == user_id).order_by(OAuthIdentity.provider)
    return list((await session.scalars(stmt)).all())
