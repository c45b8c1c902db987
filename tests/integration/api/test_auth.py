"""Login, refresh-token rotation and logout against the real database."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.integration.api.conftest import MakeAccount

pytestmark = pytest.mark.integration


async def test_login_with_the_right_password_returns_a_bearer_token_pair(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    tokens = account.tokens
    assert tokens["token_type"] == "bearer"
    assert 0 < tokens["expires_in"] <= 900
    assert tokens["access_token"].count(".") == 2
    assert tokens["refresh_token"].startswith("cmr_")
    me = await client.get("/api/v1/users/me", headers=account.headers)
    assert me.status_code == 200
    assert me.json()["email"] == account.email
    assert me.json()["last_login_at"] is not None
    assert "password_hash" not in me.json()


async def test_the_email_is_matched_regardless_of_case(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    response = await client.post(
        "/api/v1/auth/login", json={"email": account.email.upper(), "password": account.password}
    )
    assert response.status_code == 200


async def test_a_wrong_password_and_an_unknown_email_get_the_same_401(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    wrong = await client.post(
        "/api/v1/auth/login", json={"email": account.email, "password": "not it at all"}
    )
    unknown = await client.post(
        "/api/v1/auth/login", json={"email": "nobody@example.com", "password": account.password}
    )
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert wrong.json()["detail"] == unknown.json()["detail"]


async def test_requests_without_a_token_get_401(client: httpx.AsyncClient) -> None:
    for path in ("/api/v1/users/me", "/api/v1/projects"):
        response = await client.get(path)
        assert response.status_code == 401
        assert response.json()["type"] == "urn:comet:problem:unauthorized"


async def test_a_refresh_token_is_single_use_and_its_reuse_ends_the_session(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    first = account.tokens["refresh_token"]
    rotated = await client.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert rotated.status_code == 200
    second = rotated.json()["refresh_token"]
    assert second != first
    new_headers = {"Authorization": f"Bearer {rotated.json()['access_token']}"}
    assert (await client.get("/api/v1/users/me", headers=new_headers)).status_code == 200

    replayed = await client.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert replayed.status_code == 401
    # The replay revoked the family: the newer token and the session's access tokens are dead too.
    assert (await client.post("/api/v1/auth/refresh", json={"refresh_token": second})).status_code == 401
    assert (await client.get("/api/v1/users/me", headers=new_headers)).status_code == 401


async def test_an_unknown_refresh_token_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": "cmr_" + "x" * 43})
    assert response.status_code == 401


async def test_logout_revokes_the_session_and_its_tokens(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    response = await client.post("/api/v1/auth/logout", headers=account.headers)
    assert response.status_code == 204
    assert (await client.get("/api/v1/users/me", headers=account.headers)).status_code == 401
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": account.tokens["refresh_token"]}
    )
    assert refreshed.status_code == 401


async def test_a_disabled_user_can_neither_log_in_nor_use_a_token(
    client: httpx.AsyncClient, make_account: MakeAccount, api_sessions: async_sessionmaker[AsyncSession]
) -> None:
    account = await make_account()
    async with api_sessions.begin() as session:
        await session.execute(text("UPDATE users SET is_active = false WHERE id = :id"), {"id": account.id})
    assert (await client.get("/api/v1/users/me", headers=account.headers)).status_code == 401
    login = await client.post(
        "/api/v1/auth/login", json={"email": account.email, "password": account.password}
    )
    assert login.status_code == 401


async def test_refresh_tokens_are_stored_only_as_hashes(
    make_account: MakeAccount, api_sessions: async_sessionmaker[AsyncSession]
) -> None:
    account = await make_account()
    async with api_sessions() as session:
        stored = (
            await session.execute(
                text("SELECT refresh_token_hash FROM auth_sessions WHERE user_id = :id"), {"id": account.id}
            )
        ).scalar_one()
    assert account.tokens["refresh_token"] not in stored
    assert len(stored) == 64
