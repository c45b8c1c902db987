"""Users: who you are (`GET /users/me`), your password, and user management for admins
(`GET/POST /users`, `PATCH/DELETE /users/{id}`).

New passwords must pass the policy (`api.auth.passwords.password_problems`); a 422 names each
problem. Changing a password, or deactivating a user, ends their sessions and API tokens. An admin
cannot remove their own admin rights, deactivate or delete themselves (someone must remain who can
manage users).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from api.auth.passwords import hash_password, password_problems, verify_password
from api.deps import CurrentAdmin, CurrentPrincipal, CurrentUser, JsonBody, SessionDep
from api.errors import Conflict, NotFound, Unauthorized, ValidationFailed, problem_responses
from api.idempotency import Idempotent
from api.routes import API_PREFIX, Cursor
from db.models import User
from db.repositories import api_tokens, audit, auth_sessions, users
from db.repositories.errors import AlreadyExistsError
from schemas.api.common import CursorError, Page, decode_cursor, encode_cursor
from schemas.api.users import PasswordChange, UserCreate, UserOut, UserUpdate

router = APIRouter(prefix=f"{API_PREFIX}/users", tags=["users"], dependencies=[JsonBody])


def _policy(password: str, email: str, field: str) -> None:
    problems = password_problems(password, email=email)
    if problems:
        raise ValidationFailed(
            f"The password {'; '.join(problems)}.", errors=[(field, problem) for problem in problems]
        )


async def _end_credentials(
    session: SessionDep, user_id: uuid.UUID, reason: str, *, api_tokens_too: bool
) -> None:
    now = datetime.now(UTC)
    await auth_sessions.revoke_all(session, user_id, now=now, reason=reason)
    if api_tokens_too:
        await api_tokens.revoke_all(session, user_id, now=now)


@router.get("/me", summary="The authenticated user", response_model=UserOut, responses=problem_responses(401))
async def me(user: CurrentUser) -> UserOut:
    return UserOut.model_validate(user)


@router.put(
    "/me/password",
    summary="Change your password",
    description="Needs the current password. Your other sessions end; this one stays.",
    status_code=204,
    response_class=Response,
    responses=problem_responses(401, 403, 413, 415, 422),
)
async def change_password(body: PasswordChange, principal: CurrentPrincipal, session: SessionDep) -> Response:
    user = principal.user
    current_ok = user.password_hash is not None and await asyncio.to_thread(
        verify_password, user.password_hash, body.current_password
    )
    if not current_ok:
        raise Unauthorized("The current password is wrong.")
    _policy(body.new_password, user.email, "body.new_password")
    now = datetime.now(UTC)
    new_hash = await asyncio.to_thread(hash_password, body.new_password)
    await users.update_user(session, user, {"password_hash": new_hash}, at=now)
    for row in await auth_sessions.list_for_user(session, user.id, now=now):
        if row.id != principal.session_id:
            await auth_sessions.revoke(
                session, user_id=user.id, now=now, session_id=row.id, reason="password changed"
            )
    await audit.record(
        session,
        action=audit.USER_UPDATED,
        actor_id=user.id,
        target_type="user",
        target_id=user.id,
        details={"changed": ["password"]},
    )
    await session.commit()
    return Response(status_code=204)


@router.get(
    "",
    summary="List users (admin)",
    response_model=Page[UserOut],
    responses=problem_responses(401, 403, 422),
)
async def list_users(
    _: CurrentAdmin,
    session: SessionDep,
    email: Annotated[str | None, Query(max_length=320, description="Only e-mails containing this.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Cursor = None,
) -> Page[UserOut]:
    try:
        after = uuid.UUID(decode_cursor(cursor)) if cursor is not None else None
    except (CursorError, ValueError):
        raise ValidationFailed(errors=[("query.cursor", "is not a cursor returned by this API")]) from None
    found = await users.list_users(session, limit=limit + 1, after=after, email=email)
    page = found[:limit]
    next_cursor = encode_cursor(str(page[-1].id)) if len(found) > limit else None
    return Page[UserOut](data=[UserOut.model_validate(u) for u in page], next_cursor=next_cursor)


@router.post(
    "",
    summary="Create a user (admin)",
    description="Without a password the user can only log in through GitHub, GitLab or Bitbucket.",
    status_code=201,
    response_model=UserOut,
    responses=problem_responses(401, 403, 409, 413, 415, 422),
)
async def create_user(
    body: UserCreate, admin: CurrentAdmin, session: SessionDep, idempotent: Idempotent
) -> UserOut:
    if body.password is not None:
        _policy(body.password, body.email, "body.password")
    password_hash = await asyncio.to_thread(hash_password, body.password) if body.password else None
    try:
        user = await users.create_user(
            session,
            email=body.email,
            password_hash=password_hash,
            is_admin=body.is_admin,
            display_name=body.display_name,
        )
    except AlreadyExistsError:
        raise Conflict(f"A user with e-mail {body.email} exists already.") from None
    await session.flush()
    await audit.record(
        session,
        action=audit.USER_CREATED,
        actor_id=admin.user_id,
        target_type="user",
        target_id=user.id,
        details={"email": user.email, "is_admin": user.is_admin},
    )
    await session.refresh(user)
    created = UserOut.model_validate(user)
    await idempotent.commit(created, location=f"{API_PREFIX}/users/{user.id}")
    return created


async def _target(session: SessionDep, user_id: uuid.UUID) -> User:
    user = await users.get(session, user_id)
    if user is None:
        raise NotFound(f"No user {user_id}.")
    return user


@router.patch(
    # `:uuid`: only an id matches, so `PATCH /users/me` is a 405 (Allow: GET), not this route's 422.
    "/{user_id:uuid}",
    summary="Change a user (admin)",
    description="Only the fields sent change. A new password must pass the policy; changing it or "
    "deactivating the user ends their sessions (deactivating also revokes their API tokens).",
    response_model=UserOut,
    responses=problem_responses(401, 403, 404, 409, 413, 415, 422),
)
async def update_user(
    user_id: Annotated[uuid.UUID, Path()], body: UserUpdate, admin: CurrentAdmin, session: SessionDep
) -> UserOut:
    user = await _target(session, user_id)
    sent: dict[str, Any] = body.model_dump(exclude_unset=True)
    nulls = [
        f"body.{k}" for k in ("email", "password", "is_admin", "is_active") if k in sent and sent[k] is None
    ]
    if nulls:
        raise ValidationFailed(errors=[(field, "must not be null") for field in nulls])
    if user.id == admin.user_id and (sent.get("is_admin") is False or sent.get("is_active") is False):
        raise Conflict("You cannot remove your own admin rights or deactivate yourself.")
    changes = {k: v for k, v in sent.items() if k != "password"}
    if "password" in sent:
        _policy(sent["password"], sent.get("email") or user.email, "body.password")
        changes["password_hash"] = await asyncio.to_thread(hash_password, sent["password"])
    try:
        await users.update_user(session, user, changes, at=datetime.now(UTC))
    except AlreadyExistsError:
        raise Conflict(f"A user with e-mail {sent.get('email')} exists already.") from None
    if "email" in sent:
        user.email_verified = False
    if "password" in sent:
        await _end_credentials(session, user.id, "password changed", api_tokens_too=False)
    if sent.get("is_active") is False:
        await _end_credentials(session, user.id, "deactivated", api_tokens_too=True)
    await audit.record(
        session,
        action=audit.USER_UPDATED,
        actor_id=admin.user_id,
        target_type="user",
        target_id=user.id,
        details={"changed": sorted(sent), **{k: sent[k] for k in ("is_admin", "is_active") if k in sent}},
    )
    await session.commit()
    return UserOut.model_validate(user)


@router.delete(
    "/{user_id:uuid}",
    summary="Delete a user (admin)",
    description="Their sessions, API tokens, OAuth links and memberships go with them; runs and "
    "projects they created stay. The last owner of a project cannot be deleted.",
    status_code=204,
    response_class=Response,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def delete_user(
    user_id: Annotated[uuid.UUID, Path()], admin: CurrentAdmin, session: SessionDep
) -> Response:
    user = await _target(session, user_id)
    if user.id == admin.user_id:
        raise Conflict("You cannot delete yourself.")
    orphaned = await users.projects_only_owned_by(session, user.id)
    if orphaned:
        raise Conflict(
            f"The user is the last owner of {len(orphaned)} project(s); give them another owner first."
        )
    await users.delete_user(session, user.id)
    await audit.record(
        session,
        action=audit.USER_DELETED,
        actor_id=admin.user_id,
        target_type="user",
        target_id=user_id,
        details={"email": user.email},
    )
    await session.commit()
    return Response(status_code=204)
