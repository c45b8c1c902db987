"""Projects, their memberships and webhook secrets, always seen through a user's eyes.

Every read takes the user and returns only what their membership (or admin flag) lets them see,
so a project someone cannot see looks exactly like one that does not exist. Admins act as owners.
Functions work in the caller's transaction and never commit.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from db.crypto import SecretBox
from db.models import Membership, Project, Run, User, WebhookSecret
from db.repositories.errors import AlreadyExistsError
from schemas.roles import Role
from schemas.states import RUN_TERMINAL

_UNIQUE_NAMES = {
    "uq_projects_name": "a project with this name exists already",
    "uq_projects_provider": "a project for this provider repository exists already",
}


@dataclass(frozen=True, slots=True)
class ProjectAccess:
    """A project and the role the viewing user has in it."""

    project: Project
    role: Role


def _already_exists(exc: IntegrityError) -> AlreadyExistsError | None:
    text = str(exc.orig)
    for constraint, message in _UNIQUE_NAMES.items():
        if constraint in text:
            return AlreadyExistsError(message)
    return None


async def create_project(
    session: AsyncSession,
    box: SecretBox,
    *,
    owner_id: uuid.UUID,
    name: str,
    repo_url: str,
    default_branch: str,
    provider: str,
    provider_repo: str | None,
) -> tuple[Project, str]:
    """Insert a project, make `owner_id` its owner and give it a webhook secret.

    Returns the project and the webhook secret in plain text: it is stored encrypted, and this is
    the only time anyone sees it. `AlreadyExistsError` when the name or provider repo is taken.
    """
    project = Project(
        name=name,
        repo_url=repo_url,
        default_branch=default_branch,
        provider=provider,
        provider_repo=provider_repo,
        created_by=owner_id,
    )
    try:
        async with session.begin_nested():
            session.add(project)
    except IntegrityError as exc:
        raise _already_exists(exc) or exc from None
    session.add(Membership(project_id=project.id, user_id=owner_id, role=Role.OWNER.value))
    secret = await add_webhook_secret(session, box, project.id)
    await session.flush()
    return project, secret


async def repo_urls(session: AsyncSession, project_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The repository URL of each of `project_ids` that exists, in one query."""
    if not project_ids:
        return {}
    rows = await session.execute(select(Project.id, Project.repo_url).where(Project.id.in_(set(project_ids))))
    return {row.id: row.repo_url for row in rows}


async def add_webhook_secret(session: AsyncSession, box: SecretBox, project_id: uuid.UUID) -> str:
    """A new webhook secret for the project (32 random bytes, url-safe); returns the plain text."""
    secret = secrets.token_urlsafe(32)
    session.add(
        WebhookSecret(
            project_id=project_id,
            ciphertext=box.encrypt(secret.encode(), context=project_id.bytes),
            token_sha256=hashlib.sha256(secret.encode()).hexdigest(),
        )
    )
    return secret


def _visible(user: User) -> Any:
    """Projects joined with the user's membership role; admins see all (role may be null)."""
    membership = (Membership.project_id == Project.id) & (Membership.user_id == user.id)
    stmt = select(Project, Membership.role).outerjoin(Membership, membership)
    if not user.is_admin:
        stmt = stmt.where(Membership.role.is_not(None))
    return stmt


def _access(project: Project, role: str | None, user: User) -> ProjectAccess:
    return ProjectAccess(project, Role.OWNER if user.is_admin or role is None else Role(role))


async def get_visible(session: AsyncSession, project_id: uuid.UUID, user: User) -> ProjectAccess | None:
    row = (await session.execute(_visible(user).where(Project.id == project_id))).one_or_none()
    return None if row is None else _access(row[0], row[1], user)


async def list_visible(
    session: AsyncSession, user: User, *, limit: int, after_name: str | None = None
) -> list[ProjectAccess]:
    """Projects the user can see, by name, starting after `after_name` (at most `limit`)."""
    stmt = _visible(user).order_by(Project.name).limit(limit)
    if after_name is not None:
        stmt = stmt.where(Project.name > after_name)
    rows = (await session.execute(stmt)).all()
    return [_access(project, role, user) for project, role in rows]


async def update_project(session: AsyncSession, project: Project, changes: dict[str, Any]) -> Project:
    """Apply `changes` (column -> value); `AlreadyExistsError` when a new name is taken."""
    if not changes:
        return project
    try:
        async with session.begin_nested():
            for column, value in changes.items():
                setattr(project, column, value)
            project.updated_at = datetime.now(UTC)
    except IntegrityError as exc:
        raise _already_exists(exc) or exc from None
    return project


async def unfinished_runs(session: AsyncSession, project_id: uuid.UUID) -> int:
    stmt = select(func.count()).where(
        Run.project_id == project_id, Run.status.not_in([s.value for s in RUN_TERMINAL])
    )
    return int(await session.scalar(stmt) or 0)


async def delete_project(session: AsyncSession, project_id: uuid.UUID) -> None:
    """Delete the project and (by cascade) everything it owns: runs, secrets, memberships."""
    await session.execute(delete(Project).where(Project.id == project_id))


async def member_role(session: AsyncSession, project_id: uuid.UUID, user_id: uuid.UUID) -> Role | None:
    role = await session.scalar(
        select(Membership.role).where(Membership.project_id == project_id, Membership.user_id == user_id)
    )
    return None if role is None else Role(role)


async def owner_count(session: AsyncSession, project_id: uuid.UUID) -> int:
    stmt = select(func.count()).where(
        Membership.project_id == project_id, Membership.role == Role.OWNER.value
    )
    return int(await session.scalar(stmt) or 0)


async def set_member_role(
    session: AsyncSession, project_id: uuid.UUID, user_id: uuid.UUID, role: Role
) -> None:
    """Give `user_id` the role in the project (adding the membership when there is none)."""
    stmt = pg_insert(Membership).values(project_id=project_id, user_id=user_id, role=role.value)
    await session.execute(
        stmt.on_conflict_do_update(index_elements=["project_id", "user_id"], set_={"role": role.value})
    )
