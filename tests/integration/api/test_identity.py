"""Users, sessions, personal API tokens and the audit log, through the API on the real database."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from argon2 import PasswordHasher, Type
from fastapi import FastAPI
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.app import create_app
from api.auth.passwords import HASHER
from api.auth.tokens import issue_access_token, key_id
from config.settings import ApiSettings
from db.models import ApiToken, User
from db.repositories import users
from tests.integration.api.conftest import Account, MakeAccount, MakeProject, settings_for

pytestmark = pytest.mark.integration


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/api/v1/auth/login", json={"email": email, "password": password})


async def _audit(client: httpx.AsyncClient, admin: Account, **query: str) -> list[dict[str, object]]:
    response = await client.get("/api/v1/audit", params=query, headers=admin.headers)
    assert response.status_code == 200, response.text
    data: list[dict[str, object]] = response.json()["data"]
    return data


# -- users ------------------------------------------------------------------------------------------
async def test_an_admin_creates_lists_changes_and_deletes_users(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    admin = await make_account(admin=True)
    email = f"new-{secrets.token_hex(4)}@example.com"
    created = await client.post(
        "/api/v1/users",
        json={"email": email, "password": "a long enough passphrase", "display_name": "New"},
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    user = created.json()
    assert user["email"] == email
    assert "password" not in created.text
    assert created.headers["location"] == f"/api/v1/users/{user['id']}"
    assert (await _login(client, email, "a long enough passphrase")).status_code == 200

    listed = await client.get(
        "/api/v1/users", params={"email": email.split("@", maxsplit=1)[0]}, headers=admin.headers
    )
    assert [u["id"] for u in listed.json()["data"]] == [user["id"]]

    changed = await client.patch(
        f"/api/v1/users/{user['id']}",
        json={"display_name": "Renamed", "is_admin": True},
        headers=admin.headers,
    )
    assert changed.status_code == 200
    assert changed.json()["display_name"] == "Renamed"
    assert changed.json()["is_admin"] is True

    deleted = await client.delete(f"/api/v1/users/{user['id']}", headers=admin.headers)
    assert deleted.status_code == 204
    assert (
        await client.patch(f"/api/v1/users/{user['id']}", json={}, headers=admin.headers)
    ).status_code == 404
    assert (await _login(client, email, "a long enough passphrase")).status_code == 401
    actions = {e["action"] for e in await _audit(client, admin, actor_id=admin.id)}
    assert {"user.created", "user.updated", "user.deleted"} <= actions


async def test_users_are_listed_page_by_page(client: httpx.AsyncClient, make_account: MakeAccount) -> None:
    admin = await make_account(admin=True)
    tag = secrets.token_hex(4)
    for i in range(5):
        created = await client.post(
            "/api/v1/users", json={"email": f"page-{tag}-{i}@example.com"}, headers=admin.headers
        )
        assert created.status_code == 201
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2", "email": f"page-{tag}", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/users", params=params, headers=admin.headers)).json()
        seen += [u["email"] for u in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"page-{tag}-{i}@example.com" for i in range(5)]


async def test_only_admins_manage_users(client: httpx.AsyncClient, make_account: MakeAccount) -> None:
    someone = await make_account()
    for method, path in [
        ("GET", "/api/v1/users"),
        ("POST", "/api/v1/users"),
        ("PATCH", f"/api/v1/users/{someone.id}"),
        ("DELETE", f"/api/v1/users/{someone.id}"),
        ("GET", "/api/v1/audit"),
    ]:
        body = {"email": "x@example.com"} if method == "POST" else ({} if method == "PATCH" else None)
        response = await client.request(method, path, json=body, headers=someone.headers)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["detail"] == "Only administrators may do this."


async def test_a_weak_password_is_refused_with_each_problem_named(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    admin = await make_account(admin=True)
    response = await client.post(
        "/api/v1/users", json={"email": "weakling@example.com", "password": "aaaa"}, headers=admin.headers
    )
    assert response.status_code == 422
    messages = [e["message"] for e in response.json()["errors"] if e["field"] == "body.password"]
    assert messages == ["must be at least 12 characters long", "must not be a single character repeated"]
    same_as_email = await client.post(
        "/api/v1/users",
        json={"email": "correcthorsebattery@example.com", "password": "CorrectHorseBattery"},
        headers=admin.headers,
    )
    assert same_as_email.status_code == 422
    assert "must not be the e-mail address's name part" in same_as_email.text


async def test_a_duplicate_email_is_a_conflict(client: httpx.AsyncClient, make_account: MakeAccount) -> None:
    admin = await make_account(admin=True)
    response = await client.post("/api/v1/users", json={"email": admin.email.upper()}, headers=admin.headers)
    assert response.status_code == 409


async def test_an_admin_cannot_demote_deactivate_or_delete_themselves(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    admin = await make_account(admin=True)
    for body in ({"is_admin": False}, {"is_active": False}):
        response = await client.patch(f"/api/v1/users/{admin.id}", json=body, headers=admin.headers)
        assert response.status_code == 409
    assert (await client.delete(f"/api/v1/users/{admin.id}", headers=admin.headers)).status_code == 409


async def test_the_last_owner_of_a_project_cannot_be_deleted(
    client: httpx.AsyncClient, make_account: MakeAccount, make_project: MakeProject
) -> None:
    admin, owner = await make_account(admin=True), await make_account()
    await make_project(owner)
    response = await client.delete(f"/api/v1/users/{owner.id}", headers=admin.headers)
    assert response.status_code == 409
    assert "last owner" in response.json()["detail"]


async def test_deactivating_a_user_ends_their_sessions_and_api_tokens(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    admin, user = await make_account(admin=True), await make_account()
    token = (
        await client.post("/api/v1/tokens", json={"name": "ci", "scopes": ["read"]}, headers=user.headers)
    ).json()
    response = await client.patch(
        f"/api/v1/users/{user.id}", json={"is_active": False}, headers=admin.headers
    )
    assert response.status_code == 200
    await client.patch(f"/api/v1/users/{user.id}", json={"is_active": True}, headers=admin.headers)
    # Reactivated, but what was issued before stays dead.
    assert (await client.get("/api/v1/users/me", headers=user.headers)).status_code == 401
    assert (await client.get("/api/v1/users/me", headers=_bearer(token["token"]))).status_code == 401
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": user.tokens["refresh_token"]}
    )
    assert refreshed.status_code == 401


async def test_an_admin_setting_a_password_ends_the_users_sessions(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    admin, user = await make_account(admin=True), await make_account()
    response = await client.patch(
        f"/api/v1/users/{user.id}", json={"password": "a brand new passphrase"}, headers=admin.headers
    )
    assert response.status_code == 200
    assert (await client.get("/api/v1/users/me", headers=user.headers)).status_code == 401
    assert (await _login(client, user.email, user.password)).status_code == 401
    assert (await _login(client, user.email, "a brand new passphrase")).status_code == 200


async def test_a_user_changes_their_own_password_and_their_other_sessions_end(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    user = await make_account()
    other = (await _login(client, user.email, user.password)).json()
    wrong = await client.put(
        "/api/v1/users/me/password",
        json={"current_password": "not it", "new_password": "my new long passphrase"},
        headers=user.headers,
    )
    assert wrong.status_code == 401
    changed = await client.put(
        "/api/v1/users/me/password",
        json={"current_password": user.password, "new_password": "my new long passphrase"},
        headers=user.headers,
    )
    assert changed.status_code == 204
    assert (await client.get("/api/v1/users/me", headers=user.headers)).status_code == 200
    assert (await client.get("/api/v1/users/me", headers=_bearer(other["access_token"]))).status_code == 401


async def test_a_password_hashed_with_old_parameters_is_rehashed_at_login(
    client: httpx.AsyncClient, api_sessions: async_sessionmaker[AsyncSession]
) -> None:
    email, password = f"legacy-{secrets.token_hex(4)}@example.com", "an old but fine passphrase"
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1, type=Type.ID).hash(password)
    async with api_sessions() as session:
        user = await users.create_user(session, email=email, password_hash=weak)
        await session.commit()
    assert (await _login(client, email, password)).status_code == 200
    async with api_sessions() as session:
        stored = await session.scalar(select(User.password_hash).where(User.id == user.id))
    assert stored is not None
    assert stored != weak
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert not HASHER.check_needs_rehash(stored)


# -- sessions ---------------------------------------------------------------------------------------
async def test_a_user_lists_their_sessions_and_revokes_one(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    user = await make_account()
    second = (await _login(client, user.email, user.password)).json()
    listed = await client.get("/api/v1/auth/sessions", headers=user.headers)
    assert listed.status_code == 200
    sessions = listed.json()["data"]
    assert len(sessions) == 2
    current = [s for s in sessions if s["current"]]
    assert len(current) == 1
    assert current[0]["method"] == "password"
    assert current[0]["client_ip"] == "127.0.0.1"
    other_id = next(s["id"] for s in sessions if not s["current"])

    revoked = await client.delete(f"/api/v1/auth/sessions/{other_id}", headers=user.headers)
    assert revoked.status_code == 204
    assert (await client.get("/api/v1/users/me", headers=_bearer(second["access_token"]))).status_code == 401
    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert refreshed.status_code == 401
    assert (await client.delete(f"/api/v1/auth/sessions/{other_id}", headers=user.headers)).status_code == 404
    assert len((await client.get("/api/v1/auth/sessions", headers=user.headers)).json()["data"]) == 1


async def test_nobody_revokes_someone_elses_session(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    alice, mallory = await make_account(), await make_account()
    alice_session = (await client.get("/api/v1/auth/sessions", headers=alice.headers)).json()["data"][0]["id"]
    response = await client.delete(f"/api/v1/auth/sessions/{alice_session}", headers=mallory.headers)
    assert response.status_code == 404
    assert (await client.get("/api/v1/users/me", headers=alice.headers)).status_code == 200


async def test_an_access_token_of_a_revoked_session_is_refused_even_before_it_expires(
    client: httpx.AsyncClient, make_account: MakeAccount, api_settings: ApiSettings
) -> None:
    user = await make_account()
    session_id = (await client.get("/api/v1/auth/sessions", headers=user.headers)).json()["data"][0]["id"]
    # A second, still unexpired token (another jti) of the same session.
    spare = issue_access_token(api_settings, uuid.UUID(user.id), session_id=uuid.UUID(session_id)).token
    assert (await client.post("/api/v1/auth/logout", headers=user.headers)).status_code == 204
    assert (await client.get("/api/v1/users/me", headers=_bearer(spare))).status_code == 401


async def test_refresh_reuse_revokes_the_family_and_is_audited(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    admin, user = await make_account(admin=True), await make_account()
    first = user.tokens["refresh_token"]
    second = (await client.post("/api/v1/auth/refresh", json={"refresh_token": first})).json()
    third = (
        await client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    ).json()
    assert (await client.post("/api/v1/auth/refresh", json={"refresh_token": first})).status_code == 401
    assert (
        await client.post("/api/v1/auth/refresh", json={"refresh_token": third["refresh_token"]})
    ).status_code == 401
    assert (await client.get("/api/v1/users/me", headers=_bearer(third["access_token"]))).status_code == 401
    entries = await _audit(client, admin, action="auth.refresh_reused", actor_id=user.id)
    assert len(entries) == 1


# -- API tokens -------------------------------------------------------------------------------------
async def test_an_api_token_is_shown_once_stored_hashed_and_works_as_a_bearer_token(
    client: httpx.AsyncClient, make_account: MakeAccount, api_sessions: async_sessionmaker[AsyncSession]
) -> None:
    user = await make_account()
    created = await client.post(
        "/api/v1/tokens",
        json={"name": "deploy script", "scopes": ["trigger"], "expires_in_days": 7},
        headers=user.headers,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    token = body["token"]
    assert token.startswith("comet_pat_")
    assert body["prefix"] == token[:16]
    assert body["scopes"] == ["trigger"]
    expires = datetime.fromisoformat(body["expires_at"])
    assert timedelta(days=6, hours=23) < expires - datetime.now(UTC) <= timedelta(days=7)
    assert body["last_used_at"] is None

    me = await client.get("/api/v1/users/me", headers=_bearer(token))
    assert me.status_code == 200
    assert me.json()["id"] == user.id
    listed = (await client.get("/api/v1/tokens", headers=user.headers)).json()["data"]
    assert [t["name"] for t in listed] == ["deploy script"]
    assert "token" not in listed[0]
    assert listed[0]["last_used_at"] is not None
    async with api_sessions() as session:
        stored = await session.scalar(select(ApiToken.token_hash).where(ApiToken.id == uuid.UUID(body["id"])))
    assert stored is not None
    assert token not in stored
    assert len(stored) == 64


async def test_a_revoked_or_expired_api_token_is_refused(
    client: httpx.AsyncClient, make_account: MakeAccount, api_sessions: async_sessionmaker[AsyncSession]
) -> None:
    user = await make_account()
    tokens = [
        (
            await client.post(
                "/api/v1/tokens", json={"name": f"t{i}", "scopes": ["read"]}, headers=user.headers
            )
        ).json()
        for i in range(2)
    ]
    assert (await client.delete(f"/api/v1/tokens/{tokens[0]['id']}", headers=user.headers)).status_code == 204
    assert (await client.get("/api/v1/users/me", headers=_bearer(tokens[0]["token"]))).status_code == 401
    assert (await client.delete(f"/api/v1/tokens/{tokens[0]['id']}", headers=user.headers)).status_code == 404
    async with api_sessions.begin() as session:
        await session.execute(
            text("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = :id"),
            {"id": tokens[1]["id"]},
        )
    refused = await client.get("/api/v1/users/me", headers=_bearer(tokens[1]["token"]))
    assert refused.status_code == 401
    assert refused.json()["detail"] == "The API token is invalid, expired or revoked."
    assert (await client.get("/api/v1/users/me", headers=_bearer("comet_pat_" + "x" * 43))).status_code == 401


async def test_nobody_sees_or_revokes_someone_elses_api_tokens(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    alice, mallory = await make_account(), await make_account()
    token = (
        await client.post("/api/v1/tokens", json={"name": "a", "scopes": ["read"]}, headers=alice.headers)
    ).json()
    assert (await client.get("/api/v1/tokens", headers=mallory.headers)).json()["data"] == []
    assert (await client.delete(f"/api/v1/tokens/{token['id']}", headers=mallory.headers)).status_code == 404
    assert (await client.get("/api/v1/users/me", headers=_bearer(token["token"]))).status_code == 200


async def test_a_token_scope_never_widens_the_users_rights(
    client: httpx.AsyncClient, make_account: MakeAccount, make_project: MakeProject
) -> None:
    owner, viewer = await make_account(), await make_account()
    project = await make_project(owner)
    await client.put(
        f"/api/v1/projects/{project['id']}/members/{viewer.id}",
        json={"role": "viewer"},
        headers=owner.headers,
    )
    token = (
        await client.post("/api/v1/tokens", json={"name": "x", "scopes": ["admin"]}, headers=viewer.headers)
    ).json()
    response = await client.post(
        f"/api/v1/projects/{project['id']}/runs", json={"ref": "main"}, headers=_bearer(token["token"])
    )
    assert response.status_code == 403
    assert "developer role" in response.json()["detail"]


async def test_a_read_token_cannot_mint_tokens_or_log_out(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    user = await make_account()
    read = (
        await client.post("/api/v1/tokens", json={"name": "r", "scopes": ["read"]}, headers=user.headers)
    ).json()
    headers = _bearer(read["token"])
    minted = await client.post("/api/v1/tokens", json={"name": "more", "scopes": ["admin"]}, headers=headers)
    assert minted.status_code == 403
    assert (await client.get("/api/v1/tokens", headers=headers)).status_code == 200
    assert (await client.delete(f"/api/v1/tokens/{read['id']}", headers=headers)).status_code == 403


async def test_unknown_scopes_and_empty_scope_lists_are_refused(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    user = await make_account()
    for scopes in (["root"], []):
        response = await client.post(
            "/api/v1/tokens", json={"name": "x", "scopes": scopes}, headers=user.headers
        )
        assert response.status_code == 422


# -- audit ------------------------------------------------------------------------------------------
async def test_logins_failures_tokens_roles_and_secrets_are_in_the_audit_log(
    client: httpx.AsyncClient, make_account: MakeAccount, make_project: MakeProject
) -> None:
    admin, owner, member = await make_account(admin=True), await make_account(), await make_account()
    assert (await _login(client, owner.email, "wrong password!")).status_code == 401
    project = await make_project(owner)
    await client.put(
        f"/api/v1/projects/{project['id']}/members/{member.id}",
        json={"role": "developer"},
        headers=owner.headers,
    )
    await client.put(
        f"/api/v1/projects/{project['id']}/secrets/TOKEN",
        json={"value": "s3cret-v4lue"},
        headers=owner.headers,
    )
    token = (
        await client.post("/api/v1/tokens", json={"name": "t", "scopes": ["read"]}, headers=owner.headers)
    ).json()
    await client.delete(f"/api/v1/tokens/{token['id']}", headers=owner.headers)

    entries = await _audit(client, admin, actor_id=owner.id)
    actions = [e["action"] for e in entries]
    for action in (
        "auth.login",
        "auth.login_failed",
        "project.member_role_set",
        "project.secret_set",
        "token.created",
        "token.revoked",
    ):
        assert action in actions, action
    role_set = next(e for e in entries if e["action"] == "project.member_role_set")
    assert role_set["project_id"] == project["id"]
    assert role_set["details"] == {"role": "developer", "previous": None}
    assert all(e["request_id"] and e["client_ip"] == "127.0.0.1" for e in entries)
    # Secrets and tokens are never in it.
    everything = (await client.get("/api/v1/audit", params={"limit": "500"}, headers=admin.headers)).text
    assert "s3cret-v4lue" not in everything
    assert token["token"] not in everything
    assert owner.password not in everything


async def test_the_audit_log_is_newest_first_and_cursor_paginated(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    admin = await make_account(admin=True)
    for _ in range(3):
        await _login(client, admin.email, "not the password")
    first = (
        await client.get("/api/v1/audit", params={"limit": "2", "actor_id": admin.id}, headers=admin.headers)
    ).json()
    second = (
        await client.get(
            "/api/v1/audit",
            params={"limit": "2", "actor_id": admin.id, "cursor": first["next_cursor"]},
            headers=admin.headers,
        )
    ).json()
    ids = [e["id"] for e in first["data"] + second["data"]]
    assert len(ids) == len(set(ids)) == 4  # three failures and the login
    times = [e["at"] for e in first["data"] + second["data"]]
    assert times == sorted(times, reverse=True)
    assert second["data"][-1]["action"] == "auth.login"
    bad = await client.get("/api/v1/audit", params={"cursor": "bm90LWEtdXVpZA"}, headers=admin.headers)
    assert bad.status_code == 422


# -- signing key rotation ---------------------------------------------------------------------------
async def test_after_a_key_rotation_old_tokens_keep_working_until_the_old_key_is_dropped(
    client: httpx.AsyncClient, make_account: MakeAccount, api_db_url: str, api_settings: ApiSettings
) -> None:
    user = await make_account()  # its access token is signed with the current (soon old) key
    old_key = api_settings.jwt_secret.get_secret_value()
    new_key = secrets.token_urlsafe(48)
    rotated = create_app(settings_for(api_db_url, jwt_secret=new_key, jwt_previous_secrets=old_key))
    dropped = create_app(settings_for(api_db_url, jwt_secret=new_key))
    async with (
        rotated.router.lifespan_context(rotated),
        dropped.router.lifespan_context(dropped),
        _app_client(rotated) as after,
        _app_client(dropped) as later,
    ):
        assert (await after.get("/api/v1/users/me", headers=user.headers)).status_code == 200
        fresh = (await _login(after, user.email, user.password)).json()
        assert jwt.get_unverified_header(fresh["access_token"])["kid"] == key_id(new_key)
        assert (
            await later.get("/api/v1/users/me", headers=_bearer(fresh["access_token"]))
        ).status_code == 200
        assert (await later.get("/api/v1/users/me", headers=user.headers)).status_code == 401
    # The old deployment never accepts what the new key signed.
    assert (await client.get("/api/v1/users/me", headers=_bearer(fresh["access_token"]))).status_code == 401


def _app_client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://comet.test")
