"""The audit log, for admins: security-relevant actions, newest first, cursor-paginated."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import CurrentAdmin, SessionDep
from api.errors import ValidationFailed, problem_responses
from api.routes import API_PREFIX, Cursor
from db.repositories import audit
from schemas.api.audit import AuditOut
from schemas.api.common import CursorError, Page, decode_cursor, encode_cursor

router = APIRouter(prefix=API_PREFIX, tags=["audit"])


@router.get(
    "/audit",
    summary="The audit log (admin)",
    description="Logins and failed logins, session and token changes, user, role and secret "
    "changes, replays: who, when, from where, on what. Newest first.",
    response_model=Page[AuditOut],
    responses=problem_responses(401, 403, 422),
)
async def list_audit(
    _: CurrentAdmin,
    session: SessionDep,
    action: Annotated[str | None, Query(max_length=100, description="Only this action.")] = None,
    actor_id: Annotated[uuid.UUID | None, Query(description="Only actions by this user.")] = None,
    project_id: Annotated[uuid.UUID | None, Query(description="Only actions in this project.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Cursor = None,
) -> Page[AuditOut]:
    try:
        before = uuid.UUID(decode_cursor(cursor)) if cursor is not None else None
    except (CursorError, ValueError):
        raise ValidationFailed(errors=[("query.cursor", "is not a cursor returned by this API")]) from None
    rows = await audit.list_entries(
        session, limit=limit + 1, before=before, action=action, actor_id=actor_id, project_id=project_id
    )
    page = rows[:limit]
    next_cursor = encode_cursor(str(page[-1].id)) if len(rows) > limit else None
    return Page[AuditOut](data=[AuditOut.model_validate(r) for r in page], next_cursor=next_cursor)
