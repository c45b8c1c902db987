"""Users: create (e-mail unique regardless of case), look up, record logins.

Functions work in the caller's transaction and never commit; the caller decides when.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import User
from db.repositories.errors import AlreadyExistsError

__all__ = ["AlreadyExists", "AlreadyExistsError", "create_user", "get", "get_by_email", "record_login"]

AlreadyExists = AlreadyExistsError


def normalise_email(email: str) -> str:
    return email.strip()


async def create_user(
    session: AsyncSession,
    *,
    email: str,
    password_hash: str | None,
    is_admin: bool = False,
    display_name: str | None = None,
) -> User:
    """Insert a user; `AlreadyExistsError` when the e-mail (compared case-insensitively) is taken.

    The insert runs in a savepoint, so the caller's transaction stays usable after a duplicate.
    """
    user = User(
        email=normalise_email(email),
        password_hash=password_hash,
        is_admin=is_admin,
        display_name=display_name,
    )
    try:
        async with session.begin_nested():
            session.add(user)
    except IntegrityError as exc:
        if "uq_users_email_lower" in str(exc.orig):
            raise AlreadyExistsError(f"a user with e-mail {email} exists already") from None
        raise
    return user


async def get_by_email(session: AsyncSession, email: str) -> User | None:
    stmt = select(User).where(func.lower(User.email) == normalise_email(email).lower())
    return (await session.scalars(stmt)).one_or_none()


async def get(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def record_login(
    session: AsyncSession, user_id: uuid.UUID, *, at: datetime, new_password_hash: str | None = None
) -> None:
    """Note a successful login (and store a stronger hash when the parameters changed)."""
    values: dict[str, object] = {"last_login_at": at}
    if new_password_hash is not None:
        values["password_hash"] = new_password_hash
        values["updated_at"] = at
    await session.execute(update(User).where(User.id == user_id).values(**values))
