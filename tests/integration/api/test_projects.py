"""Projects: creation with a webhook secret shown once, visibility by membership, roles."""

from __future__ import annotations

import hashlib
import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.crypto import SecretBox
from tests.integration.api.conftest import MakeAccount, MakeProject

pytestmark = pytest.mark.integration


async def test_a_new_project_shows_its_webhook_secret_once_and_keeps_it_encrypted(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    api_app: FastAPI,
    api_sessions: async_sessionmaker[AsyncSession],
) -> None:
    owner = await make_account()
    body = {
        "name": f"acme-{uuid.uuid4().hex[:6]}",
        "repo_url": "https://github.com/acme/demo.git",
        "provider": "github",
        "provider_repo": f"acme/demo-{uuid.uuid4().hex[:6]}",
    }
    created = await client.post("/api/v1/projects", json=body, headers=owner.headers)
    assert created.status_code == 201, created.text
    project = created.json()
    secret = project["webhook_secret"]
    assert len(secret) >= 43
    assert project["role"] == "owner"
    assert project["default_branch"] == "main"
    assert created.headers["location"] == f"/api/v1/projects/{project['id']}"

    fetched = await client.get(f"/api/v1/projects/{project['id']}", headers=owner.headers)
    assert fetched.status_code == 200
    assert "webhook_secret" not in fetched.json()
    listed = await client.get("/api/v1/projects", headers=owner.headers)
    assert secret not in listed.text

    async with api_sessions() as session:
        row = (
            await session.execute(
                text("SELECT ciphertext, token_sha256 FROM webhook_secrets WHERE project_id = :id"),
                {"id": project["id"]},
            )
        ).one()
    assert secret.encode() not in row.ciphertext
    assert row.token_sha256 == hashlib.sha256(secret.encode()).hexdigest()
    box = SecretBox(api_app.state.settings.secret_key.get_secret_value())
    assert box.decrypt(row.ciphertext, context=uuid.UUID(project["id"]).bytes) == secret.encode()


async def test_a_project_you_are_not_a_member_of_is_404(
    client: httpx.AsyncClient, make_account: MakeAccount, make_project: MakeProject
) -> None:
    owner, stranger = await make_account(), await make_account()
    project = await make_project(owner)
    for method, path in (
        ("GET", f"/api/v1/projects/{project['id']}"),
        ("DELETE", f"/api/v1/projects/{project['id']}"),
        ("GET", f"/api/v1/projects/{project['id']}/runs"),
    ):
        response = await client.request(method, path, headers=stranger.headers)
        assert response.status_code == 404, (method, path, response.text)
    listed = await client.get("/api/v1/projects", headers=stranger.headers)
    assert project["id"] not in listed.text


async def test_an_unknown_project_is_404(client: httpx.AsyncClient, make_account: MakeAccount) -> None:
    account = await make_account()
    response = await client.get(f"/api/v1/projects/{uuid.uuid4()}", headers=account.headers)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_an_admin_sees_every_project_as_owner(
    client: httpx.AsyncClient, make_account: MakeAccount, make_project: MakeProject
) -> None:
    owner, admin = await make_account(), await make_account(admin=True)
    project = await make_project(owner)
    response = await client.get(f"/api/v1/projects/{project['id']}", headers=admin.headers)
    assert response.status_code == 200
    assert response.json()["role"] == "owner"


async def test_a_taken_project_name_is_409(
    client: httpx.AsyncClient, make_account: MakeAccount, make_project: MakeProject
) -> None:
    owner = await make_account()
    project = await make_project(owner)
    again = await client.post(
        "/api/v1/projects", json={"name": project["name"], "repo_url": "/srv/git/x"}, headers=owner.headers
    )
    assert again.status_code == 409
    assert "name" in again.json()["detail"]


async def test_roles_decide_who_may_change_trigger_and_grant(
    client: httpx.AsyncClient, make_account: MakeAccount, make_project: MakeProject
) -> None:
    owner, viewer, maintainer = await make_account(), await make_account(), await make_account()
    project = await make_project(owner)
    base = f"/api/v1/projects/{project['id']}"
    for who, role in ((viewer, "viewer"), (maintainer, "maintainer")):
        granted = await client.put(f"{base}/members/{who.id}", json={"role": role}, headers=owner.headers)
        assert granted.status_code == 200, granted.text

    assert (await client.get(base, headers=viewer.headers)).json()["role"] == "viewer"
    trigger = await client.post(f"{base}/runs", json={"ref": "main"}, headers=viewer.headers)
    assert trigger.status_code == 403
    assert "developer" in trigger.json()["detail"]
    assert (
        await client.patch(base, json={"default_branch": "dev"}, headers=viewer.headers)
    ).status_code == 403

    patched = await client.patch(base, json={"default_branch": "develop"}, headers=maintainer.headers)
    assert patched.status_code == 200
    assert patched.json()["default_branch"] == "develop"
    # No one grants a role above their own, nor touches someone above them.
    above = await client.put(
        f"{base}/members/{viewer.id}", json={"role": "owner"}, headers=maintainer.headers
    )
    assert above.status_code == 403
    demote = await client.put(
        f"{base}/members/{owner.id}", json={"role": "viewer"}, headers=maintainer.headers
    )
    assert demote.status_code == 403
    assert (await client.delete(base, headers=maintainer.headers)).status_code == 403


async def test_the_last_owner_stays_an_owner(
    client: httpx.AsyncClient, make_account: MakeAccount, make_project: MakeProject
) -> None:
    owner = await make_account()
    project = await make_project(owner)
    response = await client.put(
        f"/api/v1/projects/{project['id']}/members/{owner.id}", json={"role": "viewer"}, headers=owner.headers
    )
    assert response.status_code == 409


async def test_granting_a_role_to_an_unknown_user_is_404(
    client: httpx.AsyncClient, make_account: MakeAccount, make_project: MakeProject
) -> None:
    owner = await make_account()
    project = await make_project(owner)
    response = await client.put(
        f"/api/v1/projects/{project['id']}/members/{uuid.uuid4()}",
        json={"role": "viewer"},
        headers=owner.headers,
    )
    assert response.status_code == 404


async def test_the_owner_deletes_a_project_without_unfinished_runs(
    client: httpx.AsyncClient, make_account: MakeAccount, make_project: MakeProject
) -> None:
    owner = await make_account()
    project = await make_project(owner)
    base = f"/api/v1/projects/{project['id']}"
    assert (await client.post(f"{base}/runs", json={"ref": "main"}, headers=owner.headers)).status_code == 202
    busy = await client.delete(base, headers=owner.headers)
    assert busy.status_code == 409
    empty = await make_project(owner)
    assert (await client.delete(f"/api/v1/projects/{empty['id']}", headers=owner.headers)).status_code == 204
    assert (await client.get(f"/api/v1/projects/{empty['id']}", headers=owner.headers)).status_code == 404


async def test_projects_are_listed_by_name_page_by_page(
    client: httpx.AsyncClient, make_account: MakeAccount, make_project: MakeProject
) -> None:
    owner = await make_account()
    names = sorted([(await make_project(owner))["name"] for _ in range(3)])
    first = (await client.get("/api/v1/projects?limit=2", headers=owner.headers)).json()
    assert [p["name"] for p in first["data"]] == names[:2]
    rest = (
        await client.get(f"/api/v1/projects?limit=2&cursor={first['next_cursor']}", headers=owner.headers)
    ).json()
    assert [p["name"] for p in rest["data"]] == names[2:]
    assert rest["next_cursor"] is None
