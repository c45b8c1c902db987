"""Typed dependencies every route uses: settings, the backbone, a database session per request,
the authenticated principal (access JWT or personal API token, with its scopes checked against the
route), admins, and the JSON body check.

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
from api.errors import Forbidden, Unauthorized, UnsupportedMediaType
from api.permissions import ALL_SCOPES, Scope, authorize_scope, declared_action, scopes_from
from config.settings import ApiSettings
from db.models import User
from db.repositories import api_tokens, auth_sessions
from events.backbone import Backbone


# Dependencies are `async def` even when they do not await: FastAPI runs a plain `def` dependency
# in a worker thread, a hop that cost more than the rest of a webhook's dependencies together.
async def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


async def get_backbone(request: Request) -> Backbone:
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
    description="An access token from `POST /api/v1/auth/login` (or `/auth/refresh`), or a personal "
    "API token (`comet_pat_…`) from `POST /api/v1/tokens`.",
)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the user, what their credential may do (`scopes`), and which credential it
    is: a login session (access JWT, every scope) or a personal API token (its own scopes)."""

    user: User
    scopes: frozenset[Scope]
    claims: AccessClaims | None = None
    api_token_id: uuid.UUID | None = None

    @property
    def user_id(self) -> uuid.UUID:
        return self.user.id

    @property
    def session_id(self) -> uuid.UUID | None:
        return self.claims.session_id if self.claims is not None else None


INVALID_API_TOKEN = "The API token is invalid, expired or revoked."  # noqa: S105 - a message


async def resolve_bearer(session: AsyncSession, settings: ApiSettings, token: str) -> Principal:
    """The principal behind a bearer token: a personal API token (told apart by its `comet_pat_`
    prefix), else an access JWT whose session must still be live."""
    now = datetime.now(UTC)
    if api_tokens.looks_like_api_token(token):
        live = await api_tokens.authenticate(session, token, now=now)
        if live is None:
            raise Unauthorized(INVALID_API_TOKEN)
        if await api_tokens.touch(session, live.token.id, now=now):
            await session.commit()  # nothing else is pending yet; objects stay loaded
        return Principal(live.user, scopes_from(live.token.scopes), api_token_id=live.token.id)
    claims = verify_access_token(settings, token)
    user = await auth_sessions.active_user(session, claims.user_id, session_id=claims.session_id, now=now)
    if user is None:
        raise Unauthorized(INVALID_TOKEN)
    return Principal(user, ALL_SCOPES, claims=claims)


async def get_principal(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Authenticate the request, then check the credential's scopes allow this method on this route
    (the action the route declares, see `api/permissions.py`)."""
    if credentials is None:
        raise Unauthorized("Send an access token: `Authorization: Bearer <token>`.")
    principal = await resolve_bearer(session, settings, credentials.credentials)
    authorize_scope(principal.scopes, request.method, declared_action(request.scope.get("route")))
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def get_current_user(principal: CurrentPrincipal) -> User:
    return principal.user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_admin(principal: CurrentPrincipal) -> Principal:
    if not principal.user.is_admin:
        raise Forbidden("Only administrators may do this.")
    return principal


CurrentAdmin = Annotated[Principal, Depends(get_admin)]


async def require_json(request: Request) -> None:
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
