"""Workers, queues and project secrets through the API."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.crypto import SecretBox
from db.repositories import secrets
from tests.integration.api.conftest import MakeAccount, MakeProject

pytestmark = pytest.mark.integration


async def test_secrets_are_set_by_maintainers_listed_by_name_and_stored_encrypted(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    make_project: MakeProject,
    api_sessions: async_sessionmaker[AsyncSession],
    api_settings: object,
) -> None:
    owner = await make_account()
    project = await make_project(owner)
    url = f"/api/v1/projects/{project['id']}/secrets"

    put = await client.put(f"{url}/DEPLOY_TOKEN", json={"value": "s3cr3t-value"}, headers=owner.headers)
    listed = await client.get(url, headers=owner.headers)

    assert put.status_code == 204, put.text
    assert listed.json()["data"] == ["DEPLOY_TOKEN"]
    assert "s3cr3t" not in listed.text
    async with api_sessions() as session:
        raw = (await session.execute(text("SELECT ciphertext FROM project_secrets"))).scalars().all()
        assert all(b"s3cr3t-value" not in bytes(c) for c in raw)
        box = SecretBox(api_settings.secret_key.get_secret_value())  # type: ignore[attr-defined]
        assert (await secrets.decrypted_secrets(session, box, uuid.UUID(project["id"])))[
            "DEPLOY_TOKEN"
        ] == "s3cr3t-value"
    assert (await client.delete(f"{url}/DEPLOY_TOKEN", headers=owner.headers)).status_code == 204
    assert (await client.delete(f"{url}/DEPLOY_TOKEN", headers=owner.headers)).status_code == 404


@pytest.mark.parametrize("name", ["COMET_RUN_ID", "1BAD", "with-dash"])
async def test_a_secret_name_that_is_not_a_usable_variable_is_refused(
    client: httpx.AsyncClient, make_account: MakeAccount, make_project: MakeProject, name: str
) -> None:
    owner = await make_account()
    project = await make_project(owner)
    response = await client.put(
        f"/api/v1/projects/{project['id']}/secrets/{name}", json={"value": "x"}, headers=owner.headers
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_secrets_of_a_project_you_are_not_in_are_not_found(
    client: httpx.AsyncClient, make_account: MakeAccount, make_project: MakeProject
) -> None:
    owner, stranger = await make_account(), await make_account()
    project = await make_project(owner)
    response = await client.get(f"/api/v1/projects/{project['id']}/secrets", headers=stranger.headers)
    assert response.status_code == 404


async def test_queues_name_a_pool_nobody_serves(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    make_project: MakeProject,
    api_sessions: async_sessionmaker[AsyncSession],
) -> None:
    owner = await make_account()
    project = await make_project(owner)
    pool = f"gpu-{uuid.uuid4().hex[:6]}"
    async with api_sessions() as session:
        run_id = (
            await session.execute(
                text(
                    "INSERT INTO runs (id, project_id, number, status, ref, trigger, variables) "
                    "VALUES (gen_random_uuid(), :p, 999999, 'queued', 'refs/heads/main', '{}', '{}') RETURNING id"
                ),
                {"p": project["id"]},
            )
        ).scalar_one()
        stage_id = (
            await session.execute(
                text(
                    "INSERT INTO stages (id, run_id, name, base_name, position, matrix, status, needs, pool, spec, attempt) "
                    "VALUES (gen_random_uuid(), :r, 'train', 'train', 0, '{}', 'queued', '{}', :pool, '{}', 1) RETURNING id"
                ),
                {"r": run_id, "pool": pool},
            )
        ).scalar_one()
        await session.execute(
            text(
                "INSERT INTO stage_attempts (id, run_id, stage_id, number, status, pool) "
                "VALUES (gen_random_uuid(), :r, :s, 1, 'queued', :pool)"
            ),
            {"r": run_id, "s": stage_id, "pool": pool},
        )
        await session.commit()

    response = await client.get("/api/v1/queues", headers=owner.headers)

    assert response.status_code == 200, response.text
    queue = next(q for q in response.json()["data"] if q["pool"] == pool)
    assert queue["depth"] == 1
    assert queue["workers"] == 0
    assert f"no live worker in pool {pool}" in queue["reason"]
    assert queue["unschedulable"] is True
    assert queue["oldest_waiting_stage"].startswith("train of run")


async def test_workers_lists_registered_workers(
    client: httpx.AsyncClient, make_account: MakeAccount, api_sessions: async_sessionmaker[AsyncSession]
) -> None:
    account = await make_account()
    worker_id = f"w-{uuid.uuid4().hex[:6]}"
    async with api_sessions() as session:
        await session.execute(
            text(
                "INSERT INTO workers (id, pool, labels, concurrency, busy, hostname, pid, status) "
                "VALUES (:id, 'linux', CAST(:labels AS jsonb), 4, 1, 'host', 42, 'active')"
            ),
            {"id": worker_id, "labels": json.dumps({"arch": "arm64"})},
        )
        await session.commit()

    response = await client.get("/api/v1/workers", headers=account.headers)

    worker = next(w for w in response.json()["data"] if w["id"] == worker_id)
    assert worker == worker | {
        "pool": "linux",
        "labels": {"arch": "arm64"},
        "slots": 4,
        "busy": 1,
        "status": "active",
    }


async def test_fleet_endpoints_need_a_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/workers")).status_code == 401
    assert (await client.get("/api/v1/queues")).status_code == 401
