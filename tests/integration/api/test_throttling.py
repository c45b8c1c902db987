"""Throttling on an app with tight limits: failed logins lock the account and the address out for
exponentially longer (429 + Retry-After), and the auth and trigger buckets answer 429 when full.
Each test calls from its own client address, so they do not share counters."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.app import create_app
from api.auth.passwords import hash_password
from db.repositories import users
from tests.integration.api.conftest import settings_for

pytestmark = pytest.mark.integration

PASSWORD = "the right passphrase"


@pytest.fixture(scope="module")
async def strict_app(api_db_url: str) -> AsyncIterator[FastAPI]:
    settings = settings_for(
        api_db_url,
        rate_limit_auth="8/minute",
        rate_limit_trigger="2/minute",
        login_max_failures=3,
        login_max_failures_per_address=5,
        login_backoff_base_s=30,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


def _client(app: FastAPI, address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app, client=(address, 40000)), base_url="http://comet.test"
    )


async def _user(api_sessions: async_sessionmaker[AsyncSession]) -> str:
    email = f"throttle-{secrets.token_hex(4)}@example.com"
    async with api_sessions() as session:
        await users.create_user(session, email=email, password_hash=hash_password(PASSWORD))
        await session.commit()
    return email


async def test_repeated_failures_lock_the_account_out_even_for_the_right_password(
    strict_app: FastAPI, api_sessions: async_sessionmaker[AsyncSession]
) -> None:
    email = await _user(api_sessions)
    async with _client(strict_app, "198.51.100.1") as client:
        for _ in range(3):
            failed = await client.post("/api/v1/auth/login", json={"email": email, "password": "wrong guess"})
            assert failed.status_code == 401
        locked = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert locked.status_code == 429
    assert locked.headers["content-type"] == "application/problem+json"
    assert 25 <= int(locked.headers["retry-after"]) <= 30
    assert "Too many failed logins" in locked.json()["detail"]
    # The lock is on the account: from another address it holds too.
    async with _client(strict_app, "198.51.100.2") as elsewhere:
        again = await elsewhere.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert again.status_code == 429


async def test_an_address_guessing_many_accounts_is_locked_out(
    strict_app: FastAPI, api_sessions: async_sessionmaker[AsyncSession]
) -> None:
    email = await _user(api_sessions)
    async with _client(strict_app, "198.51.100.3") as client:
        for i in range(5):
            guess = {"email": f"nobody-{i}@example.com", "password": "guess"}
            assert (await client.post("/api/v1/auth/login", json=guess)).status_code == 401
        locked = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) >= 1
    async with _client(strict_app, "198.51.100.4") as elsewhere:
        fine = await elsewhere.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert fine.status_code == 200


async def test_the_auth_bucket_limits_requests_per_address(
    strict_app: FastAPI, api_sessions: async_sessionmaker[AsyncSession]
) -> None:
    email = await _user(api_sessions)
    async with _client(strict_app, "198.51.100.5") as client:
        statuses = [
            (await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})).status_code
            for _ in range(9)
        ]
        refused = await client.post("/api/v1/auth/refresh", json={"refresh_token": "cmr_" + "x" * 43})
    assert statuses == [200] * 8 + [429]
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60


async def test_triggering_runs_is_limited_per_user(
    strict_app: FastAPI, api_sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with _client(strict_app, "198.51.100.6") as client:
        tokens = []
        for _ in range(2):
            email = await _user(api_sessions)
            login = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
            tokens.append({"Authorization": f"Bearer {login.json()['access_token']}"})
        project = await client.post(
            "/api/v1/projects",
            json={"name": f"t-{secrets.token_hex(4)}", "repo_url": "/x"},
            headers=tokens[0],
        )
        project_id = project.json()["id"]
        url = f"/api/v1/projects/{project_id}/runs"
        statuses = [
            (await client.post(url, json={"ref": "main"}, headers=tokens[0])).status_code for _ in range(3)
        ]
        assert statuses == [202, 202, 429]
        other_project = await client.post(
            "/api/v1/projects",
            json={"name": f"t-{secrets.token_hex(4)}", "repo_url": "/x"},
            headers=tokens[1],
        )
        other = await client.post(
            f"/api/v1/projects/{other_project.json()['id']}/runs", json={"ref": "main"}, headers=tokens[1]
        )
        assert other.status_code == 202
