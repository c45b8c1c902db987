"""OAuth sign-in from the dashboard, against the local provider: the public list of providers; a
flow started with `return_to=ui` ends in a redirect to the sign-in page carrying a one-time code
(never a token), which trades once, within 60 s, for a token pair; a second use revokes the session."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import AuditEntry, OAuthHandoff
from tests.integration.api.oauth_provider import CLIENT_ID, CLIENT_SECRET, Account, Provider

pytestmark = pytest.mark.integration

EXCHANGE = "/api/v1/auth/oauth/exchange"


def _signed_in(provider: Provider, name: str, *, verified: bool = True) -> Account:
    number = secrets.randbelow(10**8)
    email = f"ui-oauth-{secrets.token_hex(4)}@example.com"
    account = Account(number, f"dev{number}", f"Dev {number}", [(email, verified, True)])
    provider.signed_in[name] = account
    return account


async def _dashboard_login(browser: httpx.AsyncClient, name: str) -> httpx.Response:
    """The dashboard's button, the provider's consent, and Comet's callback (not followed)."""
    start = await browser.get(f"/api/v1/auth/oauth/{name}/authorize", params={"return_to": "ui"})
    assert start.status_code == 302, start.text
    async with httpx.AsyncClient() as user_agent:
        consent = await user_agent.get(start.headers["location"])
    assert consent.status_code == 302, consent.text
    return await browser.get(consent.headers["location"])


def _fragment_query(location: str) -> dict[str, str]:
    fragment = urlsplit(location).fragment
    path, _, query = fragment.partition("?")
    assert path == "/signin"
    return {k: v[0] for k, v in parse_qs(query).items()}


async def _code(browser: httpx.AsyncClient, name: str = "github") -> str:
    callback = await _dashboard_login(browser, name)
    assert callback.status_code == 302, callback.text
    return _fragment_query(callback.headers["location"])["code"]


async def test_the_providers_list_is_public_and_names_each_configured_provider_without_secrets(
    browser: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    listed = await browser.get("/api/v1/auth/providers")
    assert listed.status_code == 200, listed.text
    assert listed.json() == {
        "data": [
            {"name": "github", "label": "GitHub"},
            {"name": "gitlab", "label": "GitLab"},
            {"name": "bitbucket", "label": "Bitbucket"},
        ]
    }
    assert CLIENT_ID not in listed.text
    assert CLIENT_SECRET not in listed.text
    # A Comet with no provider configured lists none (the sign-in page then shows no button).
    none = await client.get("/api/v1/auth/providers")
    assert none.status_code == 200
    assert none.json() == {"data": []}


async def test_a_dashboard_login_redirects_to_the_sign_in_page_with_a_one_time_code_and_no_token(
    browser: httpx.AsyncClient, provider: Provider, api_sessions: async_sessionmaker[AsyncSession]
) -> None:
    account = _signed_in(provider, "gitlab")
    callback = await _dashboard_login(browser, "gitlab")
    assert callback.status_code == 302, callback.text
    location = callback.headers["location"]
    assert location.startswith("/ui/#/signin?code=")
    assert "token" not in location
    assert "cmr_" not in location
    assert not any(c.name == "comet_oauth_gitlab" for c in browser.cookies.jar)  # the flow is spent
    handoff_id, _, secret = _fragment_query(location)["code"].partition(".")
    async with api_sessions() as session:
        row = await session.get(OAuthHandoff, uuid.UUID(hex=handoff_id))
        assert row is not None
        assert row.code_hash == hashlib.sha256(secret.encode()).hexdigest()  # only its hash is kept
        assert row.used_at is None
        assert (row.expires_at - row.created_at).total_seconds() <= 61
        audited = await session.scalar(
            select(AuditEntry).where(
                AuditEntry.target_type == "session", AuditEntry.target_id == str(row.session_id)
            )
        )
    assert audited is not None
    assert audited.action == "auth.oauth_linked"
    assert audited.details == {
        "provider": "gitlab",
        "account": account.login,
        "how": "created",
        "via": "dashboard",
    }


async def test_the_code_trades_once_for_a_working_token_pair_and_a_second_use_is_409_and_ends_the_session(
    browser: httpx.AsyncClient, provider: Provider
) -> None:
    _signed_in(provider, "github")
    code = await _code(browser)
    first = await browser.post(EXCHANGE, json={"code": code})
    assert first.status_code == 200, first.text
    pair = first.json()
    assert pair["token_type"] == "bearer"
    headers = {"Authorization": f"Bearer {pair['access_token']}"}
    sessions = (await browser.get("/api/v1/auth/sessions", headers=headers)).json()["data"]
    assert [s["method"] for s in sessions] == ["oauth:github"]

    second = await browser.post(EXCHANGE, json={"code": code})
    assert second.status_code == 409
    assert second.headers["content-type"] == "application/problem+json"
    assert "already used" in second.json()["detail"]
    # A code used twice may have been stolen: the session it opened is over for everyone.
    assert (await browser.get("/api/v1/users/me", headers=headers)).status_code == 401
    refreshed = await browser.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 401


async def test_an_expired_code_is_410_and_gives_no_tokens(
    browser: httpx.AsyncClient, provider: Provider, api_sessions: async_sessionmaker[AsyncSession]
) -> None:
    _signed_in(provider, "bitbucket")
    code = await _code(browser, "bitbucket")
    async with api_sessions() as session:
        await session.execute(
            update(OAuthHandoff)
            .where(OAuthHandoff.id == uuid.UUID(hex=code.partition(".")[0]))
            .values(expires_at=OAuthHandoff.created_at)
        )
        await session.commit()
    response = await browser.post(EXCHANGE, json={"code": code})
    assert response.status_code == 410
    assert response.headers["content-type"] == "application/problem+json"
    assert "expired" in response.json()["detail"]
    assert "access_token" not in response.text


async def test_a_forged_code_is_400_and_does_not_spend_the_genuine_one(
    browser: httpx.AsyncClient, provider: Provider
) -> None:
    _signed_in(provider, "github")
    code = await _code(browser)
    handoff_id = code.partition(".")[0]
    for forged in (f"{handoff_id}.{secrets.token_urlsafe(32)}", f"{uuid.uuid4().hex}.x" + "y" * 40, "x" * 50):
        response = await browser.post(EXCHANGE, json={"code": forged})
        assert response.status_code == 400, forged
        assert response.json()["detail"] == "The sign-in code is not valid; sign in again."
    assert (await browser.post(EXCHANGE, json={"code": code})).status_code == 200


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example", "/ui/", "UI"])
async def test_a_return_to_other_than_the_dashboard_is_refused_before_any_redirect(
    browser: httpx.AsyncClient, target: str
) -> None:
    response = await browser.get("/api/v1/auth/oauth/github/authorize", params={"return_to": target})
    assert response.status_code == 422
    assert "location" not in response.headers
    assert not any(c.name == "comet_oauth_github" for c in browser.cookies.jar)


async def test_a_refused_dashboard_login_goes_back_to_the_sign_in_page_with_its_status_only(
    browser: httpx.AsyncClient, provider: Provider
) -> None:
    _signed_in(provider, "github", verified=False)
    callback = await _dashboard_login(browser, "github")
    assert callback.status_code == 302, callback.text
    assert _fragment_query(callback.headers["location"]) == {"error": "403"}


async def test_an_api_clients_flow_without_return_to_still_answers_the_token_pair_as_json(
    browser: httpx.AsyncClient, provider: Provider
) -> None:
    _signed_in(provider, "gitlab")
    start = await browser.get("/api/v1/auth/oauth/gitlab/authorize")
    async with httpx.AsyncClient() as user_agent:
        consent = await user_agent.get(start.headers["location"])
    response = await browser.get(consent.headers["location"])
    assert response.status_code == 200, response.text
    assert response.json()["refresh_token"].startswith("cmr_")
