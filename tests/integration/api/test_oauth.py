"""OAuth login end to end against a local provider shaped like GitHub, GitLab and Bitbucket:
authorize -> the provider's consent -> callback -> token pair; state and PKCE mismatches refused;
only verified e-mail addresses link to, or create, a Comet user."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.auth.oauth import s256
from db.models import AuditEntry, OAuthIdentity, User
from tests.integration.api.conftest import MakeAccount
from tests.integration.api.oauth_provider import Account, Provider

pytestmark = pytest.mark.integration

PROVIDERS = ("github", "gitlab", "bitbucket")


def _account(*emails: tuple[str, bool, bool]) -> Account:
    number = secrets.randbelow(10**8)
    return Account(number, f"dev{number}", f"Dev {number}", list(emails))


def _email() -> str:
    return f"oauth-{secrets.token_hex(4)}@example.com"


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return urlunsplit(parts._replace(query=urlencode(query)))


async def _start(browser: httpx.AsyncClient, name: str) -> str:
    start = await browser.get(f"/api/v1/auth/oauth/{name}/authorize")
    assert start.status_code == 302, start.text
    return start.headers["location"]


async def _consent(authorize_url: str) -> str:
    """What the provider does when the user consents: redirect back to Comet's callback."""
    async with httpx.AsyncClient() as user_agent:
        consent = await user_agent.get(authorize_url)
    assert consent.status_code == 302, consent.text
    return consent.headers["location"]


async def _login(browser: httpx.AsyncClient, name: str) -> httpx.Response:
    return await browser.get(await _consent(await _start(browser, name)))


async def _identities(
    api_sessions: async_sessionmaker[AsyncSession], provider_user_id: str
) -> list[OAuthIdentity]:
    async with api_sessions() as session:
        stmt = select(OAuthIdentity).where(OAuthIdentity.provider_user_id == provider_user_id)
        return list((await session.scalars(stmt)).all())


@pytest.mark.parametrize("name", PROVIDERS)
async def test_authorize_redirects_to_the_provider_with_state_and_an_s256_challenge(
    browser: httpx.AsyncClient, name: str, provider: Provider
) -> None:
    location = await _start(browser, name)
    assert location.startswith(provider.base_url + f"/{name}/")
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 32
    assert query["redirect_uri"] == f"http://comet.test/api/v1/auth/oauth/{name}/callback"
    cookie = next(c for c in browser.cookies.jar if c.name == f"comet_oauth_{name}")
    assert cookie.value is not None
    assert query["state"] not in cookie.value  # sealed: neither state nor verifier readable
    assert cookie.path == f"/api/v1/auth/oauth/{name}"


@pytest.mark.parametrize("name", PROVIDERS)
async def test_a_first_login_creates_a_user_with_the_verified_primary_email_and_returns_a_token_pair(
    browser: httpx.AsyncClient, name: str, provider: Provider
) -> None:
    email = _email()
    provider.signed_in[name] = _account((f"unverified-{email}", False, False), (email, True, True))
    response = await _login(browser, name)
    assert response.status_code == 200, response.text
    pair = response.json()
    assert pair["token_type"] == "bearer"
    assert pair["refresh_token"].startswith("cmr_")
    headers = {"Authorization": f"Bearer {pair['access_token']}"}
    me = (await browser.get("/api/v1/users/me", headers=headers)).json()
    assert me["email"] == email
    assert me["email_verified"] is True
    sessions = (await browser.get("/api/v1/auth/sessions", headers=headers)).json()["data"]
    assert [s["method"] for s in sessions] == [f"oauth:{name}"]
    # The verifier went to the token endpoint; the challenge sent at authorize was its S256.
    assert provider.token_requests[-1]["code_verifier"]
    # The flow cookie is spent.
    assert not any(c.name == f"comet_oauth_{name}" for c in browser.cookies.jar)
    # Logging in again finds the same user through the link.
    again = await _login(browser, name)
    assert again.status_code == 200, again.text
    me_again = (
        await browser.get(
            "/api/v1/users/me", headers={"Authorization": f"Bearer {again.json()['access_token']}"}
        )
    ).json()
    assert me_again["id"] == me["id"]


async def test_an_existing_user_is_linked_by_a_verified_email(
    browser: httpx.AsyncClient,
    provider: Provider,
    make_account: MakeAccount,
    api_sessions: async_sessionmaker[AsyncSession],
) -> None:
    existing = await make_account()
    provider.signed_in["github"] = _account(
        ("other@example.org", True, True), (existing.email.upper(), True, False)
    )
    response = await _login(browser, "github")
    assert response.status_code == 200, response.text
    me = (
        await browser.get(
            "/api/v1/users/me", headers={"Authorization": f"Bearer {response.json()['access_token']}"}
        )
    ).json()
    assert me["id"] == existing.id
    (identity,) = await _identities(api_sessions, str(provider.signed_in["github"].id))
    assert str(identity.user_id) == existing.id
    async with api_sessions() as session:
        actions = (
            await session.scalars(
                select(AuditEntry.action).where(
                    AuditEntry.target_type == "session", AuditEntry.actor_id == identity.user_id
                )
            )
        ).all()
    assert "auth.oauth_linked" in actions


@pytest.mark.parametrize("name", PROVIDERS)
async def test_an_unverified_email_is_never_linked_to_the_user_who_has_it(
    browser: httpx.AsyncClient,
    name: str,
    provider: Provider,
    make_account: MakeAccount,
    api_sessions: async_sessionmaker[AsyncSession],
) -> None:
    victim = await make_account()
    provider.signed_in[name] = _account((victim.email, False, True))
    response = await _login(browser, name)
    assert response.status_code == 403, response.text
    assert "no verified e-mail" in response.json()["detail"]
    assert await _identities(api_sessions, _provider_user_id(name, provider.signed_in[name])) == []


async def test_an_unverified_email_next_to_a_verified_one_creates_a_new_user_instead_of_linking(
    browser: httpx.AsyncClient,
    provider: Provider,
    make_account: MakeAccount,
    api_sessions: async_sessionmaker[AsyncSession],
) -> None:
    victim = await make_account()
    own = _email()
    provider.signed_in["github"] = _account((victim.email, False, True), (own, True, False))
    response = await _login(browser, "github")
    assert response.status_code == 200, response.text
    me = (
        await browser.get(
            "/api/v1/users/me", headers={"Authorization": f"Bearer {response.json()['access_token']}"}
        )
    ).json()
    assert me["id"] != victim.id
    assert me["email"] == own


async def test_a_callback_whose_state_does_not_match_the_browsers_flow_is_refused(
    browser: httpx.AsyncClient, provider: Provider
) -> None:
    provider.signed_in["github"] = _account((_email(), True, True))
    callback = await _consent(await _start(browser, "github"))
    forged = _with_query(callback, state=secrets.token_urlsafe(24))
    response = await browser.get(forged)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert "state does not match" in response.json()["detail"]
    # The refused attempt spent the flow: the genuine callback cannot be replayed after it.
    assert (await browser.get(callback)).status_code == 400


async def test_a_callback_in_another_browser_is_refused(
    browser: httpx.AsyncClient, oauth_app: FastAPI, provider: Provider
) -> None:
    provider.signed_in["gitlab"] = _account((_email(), True, True))
    callback = await _consent(await _start(browser, "gitlab"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(oauth_app), base_url="http://comet.test"
    ) as other:
        response = await other.get(callback)
    assert response.status_code == 400
    assert "No OAuth flow" in response.json()["detail"]


async def test_a_code_issued_for_another_pkce_challenge_is_refused(
    browser: httpx.AsyncClient, provider: Provider, api_sessions: async_sessionmaker[AsyncSession]
) -> None:
    account = _account((_email(), True, True))
    provider.signed_in["bitbucket"] = account
    authorize = await _start(browser, "bitbucket")
    # An attacker's code: obtained at the provider with a challenge of their own verifier.
    tampered = _with_query(authorize, code_challenge=s256(secrets.token_urlsafe(32)))
    response = await browser.get(await _consent(tampered))
    assert response.status_code == 401, response.text
    assert "did not accept the authorization code (invalid_grant)" in response.json()["detail"]
    async with api_sessions() as session:
        created = await session.scalar(select(User).where(User.display_name == account.name))
    assert created is None


async def test_a_login_the_user_declined_at_the_provider_is_refused(browser: httpx.AsyncClient) -> None:
    location = await _start(browser, "github")
    state = parse_qs(urlsplit(location).query)["state"][0]
    response = await browser.get(f"/api/v1/auth/oauth/github/callback?error=access_denied&state={state}")
    assert response.status_code == 401
    assert "access_denied" in response.json()["detail"]


async def test_a_provider_that_is_not_configured_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/auth/oauth/github/authorize")
    assert response.status_code == 404
    assert "not configured" in response.json()["detail"]
    unknown = await client.get("/api/v1/auth/oauth/sourceforge/authorize")
    assert unknown.status_code == 422


def _provider_user_id(name: str, account: Account) -> str:
    if name == "bitbucket":
        return f"{{{account.id:08d}-0000-4000-8000-000000000000}}"
    return str(account.id)
