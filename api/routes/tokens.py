"""Personal API tokens for scripts: create (the token is shown once), list, revoke.

A token is `comet_pat_…`, sent as `Authorization: Bearer <token>` anywhere its scopes allow
(see `api/permissions.py`); only its SHA-256 is stored. A token's scopes never widen what its
user may do; a token cannot outlive its user's account being deactivated.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, cast

from fastapi import APIRouter, Path, Response

from api.deps import CurrentPrincipal, JsonBody, SessionDep
from api.errors import NotFound, problem_responses
from api.idempotency import Idempotent
from api.routes import API_PREFIX
from db.models import ApiToken
from db.repositories import api_tokens, audit
from schemas.api.tokens import TokenCreate, TokenCreated, TokenList, TokenOut, TokenScope

router = APIRouter(prefix=f"{API_PREFIX}/tokens", tags=["tokens"], dependencies=[JsonBody])


def _out(row: ApiToken) -> TokenOut:
    return TokenOut(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        scopes=cast(list[TokenScope], row.scopes),  # the table's check constraint keeps them known
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
    )


@router.post(
    "",
    summary="Create a personal API token",
    description="The response carries the token: it is shown this once only. A replay of this "
    "request (same `Idempotency-Key` and body) answers with the same token's details and `token` "
    "null: it is never shown again.",
    status_code=201,
    response_model=TokenCreated,
    responses=problem_responses(401, 403, 413, 415, 422),
)
async def create_token(
    body: TokenCreate, principal: CurrentPrincipal, session: SessionDep, idempotent: Idempotent
) -> TokenCreated:
    now = datetime.now(UTC)
    expires_at = None if body.expires_in_days is None else now + timedelta(days=body.expires_in_days)
    row, token = await api_tokens.create(
        session, user_id=principal.user_id, name=body.name, scopes=body.scopes, expires_at=expires_at
    )
    await audit.record(
        session,
        action=audit.TOKEN_CREATED,
        actor_id=principal.user_id,
        target_type="api_token",
        target_id=row.id,
        details={"name": row.name, "scopes": row.scopes, "prefix": row.prefix},
    )
    await session.refresh(row)
    created = TokenCreated(**_out(row).model_dump(), token=token)
    await idempotent.commit(created)
    return created


@router.get("", summary="Your API tokens", response_model=TokenList, responses=problem_responses(401))
async def list_tokens(principal: CurrentPrincipal, session: SessionDep) -> TokenList:
    return TokenList(data=[_out(r) for r in await api_tokens.list_for_user(session, principal.user_id)])


@router.delete(
    "/{token_id}",
    summary="Revoke an API token",
    status_code=204,
    response_class=Response,
    responses=problem_responses(401, 403, 404, 422),
)
async def revoke_token(
    token_id: Annotated[uuid.UUID, Path()], principal: CurrentPrincipal, session: SessionDep
) -> Response:
    if not await api_tokens.revoke(
        session, user_id=principal.user_id, token_id=token_id, now=datetime.now(UTC)
    ):
        raise NotFound(f"You have no API token {token_id}.")
    await audit.record(
        session,
        action=audit.TOKEN_REVOKED,
        actor_id=principal.user_id,
        target_type="api_token",
        target_id=token_id,
    )
    await session.commit()
    return Response(status_code=204)
