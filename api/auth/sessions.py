"""Opening a login session: a new refresh-token family for the user and its first token pair.
Shared by password login and OAuth login."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth.tokens import issue_access_token, new_refresh_token
from api.ratelimit import client_address
from config.settings import ApiSettings
from db.models import AuthSession, User
from db.repositories import auth_sessions
from schemas.api.auth import TokenPair


def token_pair(settings: ApiSettings, row: AuthSession, refresh_token: str) -> TokenPair:
    issued = issue_access_token(settings, row.user_id, session_id=row.id)
    return TokenPair(access_token=issued.token, refresh_token=refresh_token, expires_in=issued.expires_in)


async def open_session(
    session: AsyncSession,
    settings: ApiSettings,
    request: Request,
    user: User,
    *,
    now: datetime,
    method: str,
) -> tuple[AuthSession, TokenPair]:
    """Create the session row (not committed) and the pair to hand out once the caller commits."""
    refresh_token, token_hash = new_refresh_token()
    row = await auth_sessions.create_session(
        session,
        user_id=user.id,
        token_hash=token_hash,
        expires_at=now + timedelta(seconds=settings.refresh_token_ttl_s),
        user_agent=request.headers.get("user-agent"),
        client_ip=client_address(request),
        method=method,
    )
    return row, token_pair(settings, row, refresh_token)
