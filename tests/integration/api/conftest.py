"""Fixtures for the API's integration tests: a throwaway database migrated to head (`api_db_url`),
the app running with its lifespan on the real Kafka, an HTTP client, and accounts to log in as.

The database and topic namespace are this session's own, so nothing here sees other tests' rows
or events. In CI a missing service fails these tests; nothing is skipped.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from alembic import command
from alembic.config import Config
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.app import create_app
from api.auth.passwords import hash_password
from config.settings import DEFAULT_DATABASE_URL, DEFAULT_KAFKA, ApiSettings
from db.engine import asyncpg_dsn
from db.migrations import ALEMBIC_INI
from db.repositories import users
from tests.integration.api.oauth_provider import Provider, running_provider

BASE_DB_URL = os.environ.get("COMET_DATABASE_URL", DEFAULT_DATABASE_URL)
KAFKA = os.environ.get("COMET_KAFKA_BOOTSTRAP_SERVERS", DEFAULT_KAFKA)


def _migrate(url: str) -> None:
    config = Config(str(ALEMBIC_INI))
    config.attributes["database_url"] = url
    command.upgrade(config, "head")


async def _admin(sql: str) -> None:
    try:
        conn = await asyncpg.connect(asyncpg_dsn(BASE_DB_URL), timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL is not reachable at {BASE_DB_URL} ({exc}); run `make services`")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def api_db_url() -> AsyncIterator[str]:
    """A fresh database migrated to head, dropped at the end of the session."""
    name = f"comet_api_test_{secrets.token_hex(4)}"  # generated, never user input
    await _admin(f'CREATE DATABASE "{name}"')
    url = BASE_DB_URL.rsplit("/", 1)[0] + "/" + name
    try:
        await asyncio.to_thread(_migrate, url)
        yield url
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def settings_for(db_url: str, **overrides: Any) -> ApiSettings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "kafka_bootstrap_servers": KAFKA,
        "topic_namespace": f"tapi{secrets.token_hex(4)}",
        "kafka_partitions": 1,
        "jwt_secret": secrets.token_urlsafe(48),
        "secret_key": secrets.token_urlsafe(48),
        "db_pool_size": 5,
        # Every test client calls from the same address: keep the shared app's limits out of the way
        # (the throttling tests build their own app with tight limits).
        "rate_limit_auth": "100000/minute",
        "rate_limit_trigger": "100000/minute",
        "rate_limit_webhook": "100000/minute",
        "login_max_failures_per_address": 100000,
    }
    values.update(overrides)
    return ApiSettings(**values)


@pytest.fixture(scope="session")
def api_settings(api_db_url: str) -> ApiSettings:
    return settings_for(api_db_url)


@pytest.fixture(scope="session")
async def api_app(api_settings: ApiSettings) -> AsyncIterator[FastAPI]:
    """The app with its lifespan running (ASGITransport does not run lifespans by itself)."""
    app = create_app(api_settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="session")
def api_sessions(api_app: FastAPI) -> async_sessionmaker[AsyncSession]:
    sessions: async_sessionmaker[AsyncSession] = api_app.state.backbone.sessions
    return sessions


@pytest.fixture
async def client(api_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(api_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://comet.test") as client:
        yield client


@dataclass(frozen=True)
class Account:
    id: str
    email: str
    password: str
    tokens: dict[str, Any]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['access_token']}"}


MakeAccount = Callable[..., Awaitable[Account]]


@pytest.fixture
def make_account(api_sessions: async_sessionmaker[AsyncSession], client: httpx.AsyncClient) -> MakeAccount:
    """Create a user (directly, as `comet user create` does) and log in as them."""

    async def make(*, admin: bool = False) -> Account:
        email = f"user-{secrets.token_hex(4)}@example.com"
        password = f"correct horse {secrets.token_hex(6)}"
        async with api_sessions() as session:
            user = await users.create_user(
                session, email=email, password_hash=hash_password(password), is_admin=admin
            )
            await session.commit()
        response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.text
        return Account(str(user.id), email, password, response.json())

    return make


MakeProject = Callable[[Account], Awaitable[dict[str, Any]]]


@pytest.fixture
def make_project(client: httpx.AsyncClient) -> MakeProject:
    async def make(owner: Account) -> dict[str, Any]:
        body = {"name": f"p-{secrets.token_hex(4)}", "repo_url": "/srv/git/demo.git"}
        response = await client.post("/api/v1/projects", json=body, headers=owner.headers)
        assert response.status_code == 201, response.text
        project: dict[str, Any] = response.json()
        return project

    return make


# -- OAuth: the local provider, an app configured for it, and a client keeping the flow's cookies --
@pytest.fixture(scope="module")
async def provider() -> AsyncIterator[Provider]:
    async with running_provider() as provider:
        yield provider


@pytest.fixture(scope="module")
async def oauth_app(api_db_url: str, provider: Provider) -> AsyncIterator[FastAPI]:
    app = create_app(settings_for(api_db_url, **provider.settings()))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def browser(oauth_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """One browser: it keeps the cookies Comet sets (the sealed flow) between requests."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(oauth_app), base_url="http://comet.test"
    ) as client:
        yield client
