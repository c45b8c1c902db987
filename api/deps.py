"""Typed dependencies every route uses: settings, the backbone, a database session per request,
the authenticated user, and the JSON body check.

Sessions are not committed here: handlers commit explicitly once their repository calls are done
(and wake the relay if they added events). A session left uncommitted is rolled back on close.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth.tokens import INVALID_TOKEN, AccessClaims, verify_access_token
from api.errors import Unauthorized, UnsupportedMediaType
from config.settings import ApiSettings
from db.models import User
from db.repositories import auth_sessions
from events.backbone import Backbone


def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


def get_backbone(request: Request) -> Backbone:
    backbone: Backbone = request.app.state.backbone
    return backbone


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
BackboneDep = Annotated[Backbone, Depends(get_backbone)]


async def get_session(backbone: BackboneDep) -> AsyncIterator[AsyncSession]:
    async with backbone.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

_bearer = HTTPBearer(
    auto_error=False,
    description="An access token from `POST /api/v1/auth/login` (or `/auth/refresh`).",
)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the user, and the claims of the token they presented."""

    user: User
    claims: AccessClaims

    @property
    def user_id(self) -> uuid.UUID:
        return self.user.id


async def resolve_bearer(session: AsyncSession, settings: ApiSettings, token: str) -> Principal:
    """The principal behind a bearer token. Access JWTs for now; personal API tokens will be told
    apart here by their prefix."""
    claims = verify_access_token(settings, token)
    user = await auth_sessions.active_user(
        session, claims.user_id, session_id=claims.session_id, now=datetime.now(UTC)
    )
    if user is None:
        raise Unauthorized(INVALID_TOKEN)
    return Principal(user, claims)


async def get_principal(
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise Unauthorized("Send an access token: `Authorization: Bearer <token>`.")
    return await resolve_bearer(session, settings, credentials.credentials)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def get_current_user(principal: CurrentPrincipal) -> User:
    return principal.user


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_json(request: Request) -> None:
    """Bodies must be JSON: anything else is a 415 (before it could become a confusing 422)."""
    has_body = request.headers.get("content-length", "0") not in ("", "0") or (
        "transfer-encoding" in request.headers
    )
    if not has_body:
        return
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        raise UnsupportedMediaType(
            f"Send the body as application/json (got {media_type or 'no Content-Type'})."
        )


JsonBody = Depends(require_json)
