"""Login with e-mail and password, refresh-token rotation, and logout.

Unknown e-mail, wrong password and disabled account all get the same 401 after the same amount
of work (an Argon2 verification against a dummy hash when there is no real one), so neither the
message nor the timing tells which e-mails have accounts.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import structlog
from fastapi import APIRouter, Request, Response

from api.auth.passwords import hash_password, needs_rehash, verify_dummy, verify_password
from api.auth.tokens import issue_access_token, new_refresh_token, refresh_token_hash
from api.deps import CurrentPrincipal, JsonBody, SessionDep, SettingsDep
from api.errors import Unauthorized, problem_responses
from api.routes import API_PREFIX
from config.settings import ApiSettings
from db.models import AuthSession
from db.repositories import auth_sessions, users
from db.repositories.auth_sessions import RotationOutcome
from schemas.api.auth import LoginRequest, LogoutRequest, RefreshRequest, TokenPair

log = structlog.get_logger(__name__)
router = APIRouter(prefix=f"{API_PREFIX}/auth", tags=["auth"], dependencies=[JsonBody])

BAD_CREDENTIALS = "The e-mail or password is wrong."
BAD_REFRESH = "The refresh token is invalid, expired or revoked; log in again."


def _pair(settings: ApiSettings, row: AuthSession, refresh_token: str) -> TokenPair:
    issued = issue_access_token(settings, row.user_id, session_id=row.id)
    return TokenPair(access_token=issued.token, refresh_token=refresh_token, expires_in=issued.expires_in)


@router.post(
    "/login",
    summary="Log in with e-mail and password",
    response_model=TokenPair,
    responses=problem_responses(401, 413, 415, 422),
)
async def login(
    body: LoginRequest, request: Request, session: SessionDep, settings: SettingsDep
) -> TokenPair:
    user = await users.get_by_email(session, body.email)
    if user is None or user.password_hash is None:
        await asyncio.to_thread(verify_dummy, body.password)
        raise Unauthorized(BAD_CREDENTIALS)
    matches = await asyncio.to_thread(verify_password, user.password_hash, body.password)
    if not matches or not user.is_active:
        raise Unauthorized(BAD_CREDENTIALS)
    now = datetime.now(UTC)
    stronger = (
        await asyncio.to_thread(hash_password, body.password) if needs_rehash(user.password_hash) else None
    )
    await users.record_login(session, user.id, at=now, new_password_hash=stronger)
    refresh_token, token_hash = new_refresh_token()
    row = await auth_sessions.create_session(
        session,
        user_id=user.id,
        token_hash=token_hash,
        expires_at=now + timedelta(seconds=settings.refresh_token_ttl_s),
        user_agent=request.headers.get("user-agent"),
        client_ip=request.client.host if request.client else None,
    )
    await session.commit()
    log.info("login", user_id=str(user.id), session_id=str(row.id))
    return _pair(settings, row, refresh_token)


@router.post(
    "/refresh",
    summary="Trade a refresh token for a new token pair",
    description="The refresh token is single use. Presenting one that was already used revokes its "
    "whole session: whoever holds the newer token must log in again.",
    response_model=TokenPair,
    responses=problem_responses(401, 413, 415, 422),
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
            await session.commit()  # keep the family's revocation
            log.warning(
                "refresh token reused: session revoked",
                session_id=str(rotation.auth_session.id),
                user_id=str(rotation.auth_session.user_id),
            )
        raise Unauthorized(BAD_REFRESH)
    await session.commit()
    return _pair(settings, rotation.auth_session, refresh_token)


@router.post(
    "/logout",
    summary="Revoke the current session",
    description="Ends the session of the access token used (and of `refresh_token`, if given): its "
    "refresh token stops working and its access tokens are refused from now on.",
    status_code=204,
    response_class=Response,
    responses=problem_responses(401, 413, 415, 422),
)
async def logout(
    principal: CurrentPrincipal, session: SessionDep, body: LogoutRequest | None = None
) -> Response:
    token_hash = refresh_token_hash(body.refresh_token) if body and body.refresh_token else None
    await auth_sessions.revoke(
        session,
        user_id=principal.user_id,
        now=datetime.now(UTC),
        session_id=principal.claims.session_id,
        token_hash=token_hash,
    )
    await session.commit()
    return Response(status_code=204)
