"""Users: create (e-mail unique regardless of case), look up, list, change, delete, record logins.

Functions work in the caller's transaction and never commit; the caller decides when.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Membership, User
from db.repositories.errors import AlreadyExistsError

__all__ = [
    "AlreadyExists",
    "AlreadyExistsError",
    "admin_count",
    "create_user",
    "delete_user",
    "get",
    "get_by_email",
    "list_users",
    "projects_only_owned_by",
    "record_login",
    "update_user",
]

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


async def list_users(
    session: AsyncSession, *, limit: int, after: uuid.UUID | None = None, email: str | None = None
) -> Sequence[User]:
    """Users in creation order (ids are time-ordered), after `after`; `email` filters by substring."""
    stmt = select(User).order_by(User.id).limit(limit)
    if after is not None:
        stmt = stmt.where(User.id > after)
    if email:
        pattern = "%" + email.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(func.lower(User.email).like(pattern, escape="\\"))
    return (await session.scalars(stmt)).all()


async def update_user(session: AsyncSession, user: User, changes: Mapping[str, Any], *, at: datetime) -> User:
    """Apply `changes` (column -> value); `AlreadyExistsError` when a new e-mail is taken."""
    if not changes:
        return user
    try:
        async with session.begin_nested():
            for column, value in changes.items():
                setattr(user, column, normalise_email(value) if column == "email" else value)
            user.updated_at = at
    except IntegrityError as exc:
        if "uq_users_email_lower" in str(exc.orig):
            raise AlreadyExistsError(f"a user with e-mail {changes['email']} exists already") from None
        raise
    return user


async def delete_user(session: AsyncSession, user_id: uuid.UUID) -> bool:
    """Delete the user; their sessions, tokens, identities and memberships go with them (cascade);
    runs and projects they created keep existing without them."""
    result = await session.execute(delete(User).where(User.id == user_id))
    return bool(getattr(result, "rowcount", 0))


async def admin_count(session: AsyncSession) -> int:
    stmt = select(func.count()).where(User.is_admin.is_(True), User.is_active.is_(True))
    return int(await session.scalar(stmt) or 0)


async def projects_only_owned_by(session: AsyncSession, user_id: uuid.UUID) -> Sequence[uuid.UUID]:
    """Projects whose only owner is this user (deleting them would leave the project ownerless)."""
    other = Membership.__table__.alias("other")
    stmt = select(Membership.project_id).where(
        Membership.user_id == user_id,
        Membership.role == "owner",
        ~select(other.c.project_id)
        .where(
            other.c.project_id == Membership.project_id,
            other.c.role == "owner",
            other.c.user_id != user_id,
        )
        .exists(),
    )
    return (await session.scalars(stmt)).all()
