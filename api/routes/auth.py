"""Login with e-mail and password, refresh-token rotation, logout, and the user's sessions.

Unknown e-mail, wrong password and disabled account all get the same 401 after the same amount
of work (an Argon2 verification against a dummy hash when there is no real one), so neither the
message nor the timing tells which e-mails have accounts. Failed logins count per account and per
address; past a threshold each further failure locks out for longer (429 with Retry-After), and
`/login` and `/refresh` are rate limited per address besides.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Path, Request, Response

from api.auth.passwords import hash_password, needs_rehash, verify_dummy, verify_password
from api.auth.sessions import open_session, token_pair
from api.auth.throttle import LoginThrottle
from api.auth.tokens import new_refresh_token, refresh_token_hash
from api.deps import CurrentPrincipal, JsonBody, SessionDep, SettingsDep
from api.errors import BadRequest, NotFound, TooManyRequests, Unauthorized, problem_responses
from api.ratelimit import RateLimited, client_address
from api.routes import API_PREFIX
from db.repositories import audit, auth_sessions, users
from db.repositories.auth_sessions import RotationOutcome
from schemas.api.auth import (
    LoginRequest,
    LogoutRequest,
    RefreshRequest,
    SessionList,
    SessionOut,
    TokenPair,
)

log = structlog.get_logger(__name__)
router = APIRouter(prefix=f"{API_PREFIX}/auth", tags=["auth"], dependencies=[JsonBody])

BAD_CREDENTIALS = "The e-mail or password is wrong."
BAD_REFRESH = "The refresh token is invalid, expired or revoked; log in again."
AuthRateLimit = Depends(RateLimited("auth"))


def login_throttle(request: Request) -> LoginThrottle:
    throttle: LoginThrottle = request.app.state.login_throttle
    return throttle


@router.post(
    "/login",
    summary="Log in with e-mail and password",
    response_model=TokenPair,
    dependencies=[AuthRateLimit],
    responses=problem_responses(401, 413, 415, 422, 429),
)
async def login(
    body: LoginRequest, request: Request, session: SessionDep, settings: SettingsDep
) -> TokenPair:
    throttle, address = login_throttle(request), client_address(request)
    lockout = await throttle.locked_out(body.email, address)
    if lockout is not None:
        await audit.record(
            session, action=audit.LOGIN_THROTTLED, details={"email": body.email, "by": lockout.reason}
        )
        await session.commit()
        raise TooManyRequests(
            f"Too many failed logins; retry in {lockout.retry_after_s} s.",
            headers={"Retry-After": str(lockout.retry_after_s)},
        )
    user = await users.get_by_email(session, body.email)
    if user is None or user.password_hash is None:
        await asyncio.to_thread(verify_dummy, body.password)
        matches = False
    else:
        matches = await asyncio.to_thread(verify_password, user.password_hash, body.password)
    if user is None or user.password_hash is None or not matches or not user.is_active:
        await throttle.failed(body.email, address)
        await audit.record(
            session,
            action=audit.LOGIN_FAILED,
            actor_id=user.id if user else None,
            target_type="user",
            target_id=user.id if user else None,
            details={"email": body.email},
        )
        await session.commit()
        raise Unauthorized(BAD_CREDENTIALS)
    await throttle.succeeded(body.email, address)
    now = datetime.now(UTC)
    stronger = (
        await asyncio.to_thread(hash_password, body.password) if needs_rehash(user.password_hash) else None
    )
    await users.record_login(session, user.id, at=now, new_password_hash=stronger)
    row, pair = await open_session(session, settings, request, user, now=now, method="password")
    await audit.record(
        session,
        action=audit.LOGIN,
        actor_id=user.id,
        target_type="session",
        target_id=row.id,
        details={"method": "password", "rehashed": stronger is not None},
    )
    await session.commit()
    log.info("login", user_id=str(user.id), session_id=str(row.id))
    return pair


@router.post(
    "/refresh",
    summary="Trade a refresh token for a new token pair",
    description="The refresh token is single use. Presenting one that was already used revokes its "
    "whole session: whoever holds the newer token must log in again.",
    response_model=TokenPair,
    dependencies=[AuthRateLimit],
    responses=problem_responses(401, 413, 415, 422, 429),
)
async def refresh(body: RefreshRequest, session: SessionDep, settings: SettingsDep) -> TokenPair:
    refresh_token, new_hash = new_refresh_token()
    rotation = await auth_sessions.rotate(
        session,
        presented_hash=refresh_token_hash(body.refresh_token),
        new_hash=new_hash,
        now=datetime.now(UTC),
    )
    if rotation.outcome is not RotationOutcome.ROTATED or rotation.auth_session is None:
        if rotation.outcome is RotationOutcome.REUSED and rotation.auth_session is not None:
            family = rotation.auth_session
            await audit.record(
                session,
                action=audit.REFRESH_REUSED,
                actor_id=family.user_id,
                target_type="session",
                target_id=family.id,
                details={"revoked": "the whole session"},
            )
            await session.commit()  # keep the family's revocation
            log.warning(
                "refresh token reused: session revoked",
                session_id=str(family.id),
                user_id=str(family.user_id),
            )
        raise Unauthorized(BAD_REFRESH)
    await session.commit()
    return token_pair(settings, rotation.auth_session, refresh_token)


@router.post(
    "/logout",
    summary="Revoke the current session",
    description="Ends the session of the access token used (and of `refresh_token`, if given): its "
    "refresh token stops working and its access tokens are refused from now on. API tokens are "
    "revoked with `DELETE /tokens/{id}` instead.",
    status_code=204,
    response_class=Response,
    responses=problem_responses(400, 401, 403, 413, 415, 422),
)
async def logout(
    principal: CurrentPrincipal, session: SessionDep, body: LogoutRequest | None = None
) -> Response:
    token_hash = refresh_token_hash(body.refresh_token) if body and body.refresh_token else None
    if principal.session_id is None and token_hash is None:
        raise BadRequest("An API token has no session to log out of; revoke it with DELETE /tokens/{id}.")
    revoked = await auth_sessions.revoke(
        session,
        user_id=principal.user_id,
        now=datetime.now(UTC),
        session_id=principal.session_id,
        token_hash=token_hash,
    )
    await audit.record(
        session,
        action=audit.LOGOUT,
        actor_id=principal.user_id,
        target_type="session",
        target_id=principal.session_id,
        details={"sessions_revoked": revoked},
    )
    await session.commit()
    return Response(status_code=204)


@router.get(
    "/sessions",
    summary="Your live sessions",
    description="Every login (password or OAuth) that has not ended, newest first.",
    response_model=SessionList,
    responses=problem_responses(401),
)
async def list_sessions(principal: CurrentPrincipal, session: SessionDep) -> SessionList:
    rows = await auth_sessions.list_for_user(session, principal.user_id, now=datetime.now(UTC))
    return SessionList(
        data=[
            SessionOut(
                id=r.id,
                method=r.method,
                created_at=r.created_at,
                last_refreshed_at=r.rotated_at,
                expires_at=r.expires_at,
                user_agent=r.user_agent,
                client_ip=r.client_ip,
                current=r.id == principal.session_id,
            )
            for r in rows
        ]
    )


@router.delete(
    "/sessions/{session_id}",
    summary="Revoke one of your sessions",
    description="Its refresh token stops working and its access tokens are refused from now on.",
    status_code=204,
    response_class=Response,
    responses=problem_responses(401, 403, 404, 422),
)
async def revoke_session(
    session_id: Annotated[uuid.UUID, Path()], principal: CurrentPrincipal, session: SessionDep
) -> Response:
    revoked = await auth_sessions.revoke(
        session, user_id=principal.user_id, now=datetime.now(UTC), session_id=session_id, reason="revoked"
    )
    if not revoked:
        raise NotFound(f"You have no live session {session_id}.")
    await audit.record(
        session,
        action=audit.SESSION_REVOKED,
        actor_id=principal.user_id,
        target_type="session",
        target_id=session_id,
    )
    await session.commit()
    return Response(status_code=204)
