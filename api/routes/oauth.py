"""OAuth 2 login: `GET /auth/oauth/{provider}/authorize` sends the browser to the provider;
`GET /auth/oauth/{provider}/callback` finishes the flow and answers with a token pair. A flow the
dashboard started (`?return_to=ui`) ends instead with a redirect to `/ui/#/signin?code=…`, a
one-time code the dashboard trades at `POST /auth/oauth/exchange` (`api/auth/handoff.py`).
`GET /auth/providers` lists the configured providers for the sign-in page.

Who the provider account is, in order: an account linked before -> its user; else a user with
one of the account's VERIFIED e-mail addresses -> linked to it; else (if sign-up is allowed) a
new user with the primary verified address. An account with no verified address gets 403: an
unverified address never links to, nor creates, anyone. See `api/auth/oauth.py` for the flow.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal
from urllib.parse import urlencode

import httpx
import structlog
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import handoff, oauth
from api.auth.sessions import open_session, token_pair
from api.auth.tokens import new_refresh_token
from api.deps import JsonBody, SessionDep, SettingsDep
from api.errors import ApiError, NotFound, error_for_status, problem_responses
from api.ratelimit import RateLimited
from api.routes import API_PREFIX
from config.settings import ApiSettings
from db.crypto import SecretBox
from db.models import User
from db.repositories import audit, oauth_identities, users
from db.repositories.errors import AlreadyExistsError
from schemas.api.auth import OAuthExchangeRequest, OAuthProviderList, OAuthProviderOut, TokenPair

log = structlog.get_logger(__name__)
router = APIRouter(prefix=f"{API_PREFIX}/auth", tags=["auth"], dependencies=[Depends(RateLimited("auth"))])

ProviderParam = Annotated[oauth.ProviderName, Path(description="`github`, `gitlab` or `bitbucket`.")]
UI = "ui"  # the one place besides the caller a flow may return to: never a URL from the request
ReturnTo = Annotated[
    Literal["ui"] | None,
    Query(description="`ui` when the dashboard starts the flow: the callback then redirects to it."),
]


def _config(settings: ApiSettings, provider: str) -> oauth.ProviderConfig:
    config = oauth.provider_config(settings, provider)
    if config is None:
        raise NotFound(f"Login with {provider} is not configured on this Comet.")
    return config


def _callback_path(provider: str) -> str:
    return f"{API_PREFIX}/auth/oauth/{provider}/callback"


def _redirect_uri(settings: ApiSettings, request: Request, provider: str) -> str:
    base = settings.public_url.rstrip("/") if settings.public_url else str(request.base_url).rstrip("/")
    return base + _callback_path(provider)


def _cookie_path(provider: str) -> str:
    return f"{API_PREFIX}/auth/oauth/{provider}"


def _ui_url(settings: ApiSettings, **params: str) -> str:
    """The dashboard's sign-in page (same origin; the parameters ride in the fragment)."""
    base = settings.public_url.rstrip("/") if settings.public_url else ""
    return f"{base}/ui/#/signin?{urlencode(params)}"


def _clear_cookie(settings: ApiSettings, provider: str) -> str:
    secure = "; Secure" if settings.tls else ""
    return f"{oauth.cookie_name(provider)}=; Max-Age=0; Path={_cookie_path(provider)}; HttpOnly; SameSite=Lax{secure}"


@router.get(
    "/providers",
    summary="The OAuth providers you can log in with",
    description="Public: the providers configured on this Comet (name and display label only), "
    "for a sign-in page's buttons. Empty when none is.",
    response_model=OAuthProviderList,
    responses=problem_responses(429),
)
async def providers(settings: SettingsDep) -> OAuthProviderList:
    return OAuthProviderList(
        data=[OAuthProviderOut(name=c.name, label=oauth.LABELS[c.name]) for c in oauth.configured(settings)]
    )


@router.get(
    "/oauth/{provider}/authorize",
    summary="Start logging in with GitHub, GitLab or Bitbucket",
    description="Redirects (302) to the provider's consent page with a fresh `state` and a PKCE "
    "challenge; the flow is bound to this browser by a short-lived sealed cookie. With "
    "`return_to=ui` (the only value taken) the callback redirects to the dashboard instead of "
    "answering JSON.",
    status_code=302,
    response_class=RedirectResponse,
    responses=problem_responses(404, 422, 429),
)
async def authorize(
    provider: ProviderParam, request: Request, settings: SettingsDep, return_to: ReturnTo = None
) -> RedirectResponse:
    config = _config(settings, provider)
    flow = oauth.new_flow(provider, return_to=return_to)
    response = RedirectResponse(
        oauth.authorize_url(config, flow, _redirect_uri(settings, request, provider)), status_code=302
    )
    response.set_cookie(
        oauth.cookie_name(provider),
        oauth.seal(SecretBox(settings.secret_key.get_secret_value()), flow),
        max_age=oauth.FLOW_TTL_S,
        path=_cookie_path(provider),
        httponly=True,
        secure=settings.tls,
        samesite="lax",
    )
    return response


async def _user_for(session: AsyncSession, settings: ApiSettings, profile: oauth.Profile) -> tuple[User, str]:
    """The Comet user for the provider account, and how it was found (`linked`, `matched`, `created`)."""
    user = await oauth_identities.find_user(session, profile.provider, profile.user_id)
    how = "linked"
    if user is None:
        verified = profile.verified_emails
        if not verified:
            raise oauth.OAuthError(
                403,
                f"Your {profile.provider} account has no verified e-mail address; verify one there "
                "and log in again.",
            )
        for address in verified:
            user = await users.get_by_email(session, address)
            if user is not None:
                how = "matched"
                break
        if user is None:
            if not settings.oauth_allow_signup:
                raise oauth.OAuthError(403, "This Comet does not create accounts on first OAuth login.")
            user = await users.create_user(
                session, email=verified[0], password_hash=None, display_name=profile.name or profile.login
            )
            user.email_verified = True
            how = "created"
        await oauth_identities.link(
            session,
            user_id=user.id,
            provider=profile.provider,
            provider_user_id=profile.user_id,
            login=profile.login,
            email=verified[0],
        )
    if not user.is_active:
        raise oauth.OAuthError(401, "This account is disabled.")
    return user, how


async def _finish_flow(
    session: AsyncSession,
    settings: ApiSettings,
    request: Request,
    config: oauth.ProviderConfig,
    flow: oauth.Flow,
    code: str | None,
    state: str | None,
    error: str | None,
) -> tuple[User, str, oauth.Profile]:
    """Check the flow, exchange the code, fetch the account, find or make its user (OAuthError if not)."""
    oauth.check_state(flow, state)
    if error is not None:
        raise oauth.OAuthError(401, f"{config.name} did not authorize the login ({error}).")
    if not code:
        raise oauth.OAuthError(400, "The callback carries no authorization code.")
    redirect_uri = _redirect_uri(settings, request, config.name)
    async with httpx.AsyncClient(timeout=oauth.HTTP_TIMEOUT_S, follow_redirects=False) as client:
        token = await oauth.exchange_code(client, config, code, flow.verifier, redirect_uri)
        profile = await oauth.fetch_profile(client, config, token)
    try:
        user, how = await _user_for(session, settings, profile)
    except AlreadyExistsError:
        raise oauth.OAuthError(409, "This account was linked concurrently; log in again.") from None
    return user, how, profile


@router.get(
    "/oauth/{provider}/callback",
    summary="Finish logging in with GitHub, GitLab or Bitbucket",
    description="The provider redirects here with `code` and `state`. Answers with a token pair, "
    "like `/auth/login`. 400 when the state does not match this browser's flow; 401 when the "
    "provider refuses the code (e.g. a PKCE mismatch); 403 when the account has no verified e-mail. "
    "A flow started with `return_to=ui` is answered with a redirect (302) to "
    "`/ui/#/signin?code=<one-time code>` (or `?error=<status>`) instead: no token is put in a URL.",
    response_model=TokenPair,
    responses={
        **problem_responses(400, 401, 403, 404, 409, 422, 429, 502),
        302: {"description": "A dashboard flow: to `/ui/#/signin?code=…` or `?error=<status>`."},
    },
)
async def callback(
    provider: ProviderParam,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    code: Annotated[str | None, Query(max_length=2000)] = None,
    state: Annotated[str | None, Query(max_length=500)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    config = _config(settings, provider)
    clear = {"Set-Cookie": _clear_cookie(settings, provider)}
    flow: oauth.Flow | None = None
    try:
        box = SecretBox(settings.secret_key.get_secret_value())
        flow = oauth.unseal(box, config.name, request.cookies.get(oauth.cookie_name(config.name)))
        user, how, profile = await _finish_flow(session, settings, request, config, flow, code, state, error)
    except oauth.OAuthError as exc:
        await session.rollback()
        await audit.record(
            session,
            action=audit.OAUTH_FAILED,
            details={"provider": provider, "status": exc.status, "reason": exc.detail},
        )
        await session.commit()
        log.info("oauth login refused", provider=provider, status=exc.status, reason=exc.detail)
        if flow is not None and flow.return_to == UI:
            # Only the status: the page words it itself, so nothing in its URL is shown verbatim.
            return RedirectResponse(_ui_url(settings, error=str(exc.status)), status_code=302, headers=clear)
        failure: ApiError = error_for_status(exc.status, exc.detail, headers=clear)
        raise failure from None
    now = datetime.now(UTC)
    await users.record_login(session, user.id, at=now)
    row, pair = await open_session(session, settings, request, user, now=now, method=f"oauth:{provider}")
    details = {"provider": provider, "account": profile.login, "how": how}
    for_ui = flow.return_to == UI
    await audit.record(
        session,
        action=audit.OAUTH_LINKED if how != "linked" else audit.OAUTH_LOGIN,
        actor_id=user.id,
        target_type="session",
        target_id=row.id,
        details=details | {"via": "dashboard"} if for_ui else details,
    )
    if for_ui:
        # The pair is dropped: the session's refresh token is replaced when the code is exchanged.
        handoff_code = await handoff.issue(session, row.id, now=now)
        await session.commit()
        log.info("oauth login", provider=provider, user_id=str(user.id), how=how, via="dashboard")
        return RedirectResponse(_ui_url(settings, code=handoff_code), status_code=302, headers=clear)
    await session.commit()
    log.info("oauth login", provider=provider, user_id=str(user.id), how=how)
    return Response(pair.model_dump_json(), media_type="application/json", headers=clear)


@router.post(
    "/oauth/exchange",
    summary="Trade the dashboard's one-time sign-in code for a token pair",
    description="The code from `/ui/#/signin?code=…` after an OAuth login the dashboard started. "
    "Valid 60 s and once: 400 when unknown, 409 when already used (the session it opened is "
    "revoked: a code used twice may have been stolen), 410 when expired.",
    response_model=TokenPair,
    dependencies=[JsonBody],
    responses=problem_responses(400, 401, 409, 410, 413, 415, 422, 429),
)
async def exchange(body: OAuthExchangeRequest, session: SessionDep, settings: SettingsDep) -> TokenPair:
    now = datetime.now(UTC)
    try:
        redeemed = await handoff.redeem(session, body.code, new_refresh=new_refresh_token(), now=now)
    except handoff.HandoffError as exc:
        # Committed with the audit entry: a reused code's revocation must stick.
        await audit.record(
            session,
            action=audit.OAUTH_FAILED,
            target_type="session" if exc.session_id else None,
            target_id=exc.session_id,
            details={"step": "exchange", "status": exc.status, "reason": exc.detail},
        )
        await session.commit()
        log.info("oauth code refused", status=exc.status, reason=exc.detail)
        raise error_for_status(exc.status, exc.detail) from None
    await session.commit()
    log.info("oauth code exchanged", user_id=str(redeemed.auth_session.user_id))
    return token_pair(settings, redeemed.auth_session, redeemed.refresh_token)
