"""The audit log: one row per security-relevant action (logins and failed logins, session and token
changes, user, role and secret changes, replays), readable by admins.

`record` adds the row to the caller's transaction (it never commits), so an audit entry is kept
exactly when the change it describes is. Details must never hold a secret, a token or a password.

    await audit.record(session, action="webhook.replayed", actor_id=user.id,
                       target_type="delivery", target_id=str(delivery.id), project_id=project.id)
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AuditEntry

# The actions Comet records; other components may add their own `<area>.<verb>` names.
LOGIN = "auth.login"
LOGIN_FAILED = "auth.login_failed"
LOGIN_THROTTLED = "auth.login_throttled"
LOGOUT = "auth.logout"
REFRESH_REUSED = "auth.refresh_reused"
SESSION_REVOKED = "auth.session_revoked"
OAUTH_LOGIN = "auth.oauth_login"
OAUTH_LINKED = "auth.oauth_linked"
OAUTH_FAILED = "auth.oauth_failed"
TOKEN_CREATED = "token.created"
TOKEN_REVOKED = "token.revoked"
USER_CREATED = "user.created"
USER_UPDATED = "user.updated"
USER_DELETED = "user.deleted"
MEMBER_ROLE_SET = "project.member_role_set"
PROJECT_DELETED = "project.deleted"
SECRET_SET = "project.secret_set"
SECRET_DELETED = "project.secret_deleted"
WEBHOOK_REPLAYED = "webhook.replayed"
WEBHOOK_SECRET_ROTATED = "project.webhook_secret_rotated"
INTEGRATION_SET = "project.integration_set"
INTEGRATION_REMOVED = "project.integration_removed"
TEST_QUARANTINED = "test.quarantined"
TEST_RELEASED = "test.released"
ENVIRONMENT_SET = "project.environment_set"
DEPLOYMENT_APPROVED = "deployment.approved"
DEPLOYMENT_REJECTED = "deployment.rejected"
DEPLOYMENT_ROLLBACK = "deployment.rollback_requested"


def _bound(name: str) -> str | None:
    value = structlog.contextvars.get_contextvars().get(name)
    return value if isinstance(value, str) else None


async def record(
    session: AsyncSession,
    *,
    action: str,
    actor_id: uuid.UUID | None = None,
    target_type: str | None = None,
    target_id: str | uuid.UUID | None = None,
    project_id: uuid.UUID | None = None,
    client_ip: str | None = None,
    request_id: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Add an audit entry to the session's transaction. The request id and client address default
    to the current request's (bound to the log context by the API's middleware)."""
    entry = AuditEntry(
        action=action[:100],
        actor_id=actor_id,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id)[:100],
        project_id=project_id,
        client_ip=(client_ip or _bound("client_ip") or "")[:64] or None,
        request_id=(request_id or _bound("request_id") or "")[:100] or None,
        details=dict(details or {}),
    )
    session.add(entry)
    return entry


async def list_entries(
    session: AsyncSession,
    *,
    limit: int,
    before: uuid.UUID | None = None,
    action: str | None = None,
    actor_id: uuid.UUID | None = None,
    project_id: uuid.UUID | None = None,
) -> Sequence[AuditEntry]:
    """Entries newest first (ids are time-ordered UUIDv7), starting below `before`."""
    stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if before is not None:
        stmt = stmt.where(AuditEntry.id < before)
    if action is not None:
        stmt = stmt.where(AuditEntry.action == action)
    if actor_id is not None:
        stmt = stmt.where(AuditEntry.actor_id == actor_id)
    if project_id is not None:
        stmt = stmt.where(AuditEntry.project_id == project_id)
    return (await session.scalars(stmt)).all()
