"""`Idempotency-Key` through the API on the real database: a retried POST gets its first answer
and creates nothing more; another request under the same key is a 422; keys are per principal;
errors are not remembered; racing requests create one resource; expired keys stop replaying; and
secrets shown once are never stored or shown again."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.responses import Response

from api.idempotency import Claim, IdempotencyKeyReused, IdempotentRequest, Replay, fingerprint
from db.repositories import idempotency
from db.repositories.idempotency import StoredAnswer
from db.repositories.runs import create_run
from schemas.api.runs import RunAccepted
from tests.integration.api.conftest import Account, MakeAccount, MakeProject

pytestmark = pytest.mark.integration

REPLAYED = "idempotent-replayed"


def _key(account: Account, key: str | None = None) -> dict[str, str]:
    return {**account.headers, "Idempotency-Key": key or str(uuid.uuid4())}


async def _count(sessions: async_sessionmaker[AsyncSession], sql: str, **params: Any) -> int:
    async with sessions() as session:
        return int((await session.execute(text(sql), params)).scalar_one())


def _assert_reused(response: httpx.Response) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "urn:comet:problem:idempotency-key-reused"
    assert problem["errors"] == [
        {"field": "header.Idempotency-Key", "message": "was already used with another request"}
    ]


@dataclass
class Runs:
    """A fresh project of a fresh owner, its trigger endpoint, and what it holds in the database."""

    client: httpx.AsyncClient
    sessions: async_sessionmaker[AsyncSession]
    owner: Account
    project: dict[str, Any]

    @property
    def url(self) -> str:
        return f"/api/v1/projects/{self.project['id']}/runs"

    async def trigger(
        self, key: str | None, body: dict[str, Any] | None = None, *, by: Account | None = None
    ) -> httpx.Response:
        headers = (by or self.owner).headers
        if key is not None:
            headers = {**headers, "Idempotency-Key": key}
        return await self.client.post(self.url, json=body or {"ref": "main"}, headers=headers)

    async def count(self) -> int:
        return await _count(
            self.sessions, "SELECT count(*) FROM runs WHERE project_id = :p", p=self.project["id"]
        )

    async def requested_events(self) -> int:
        return await _count(
            self.sessions,
            "SELECT count(*) FROM outbox WHERE event_type = 'run.requested' "
            "AND run_id IN (SELECT id FROM runs WHERE project_id = :p)",
            p=self.project["id"],
        )


@pytest.fixture
async def runs(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    make_project: MakeProject,
    api_sessions: async_sessionmaker[AsyncSession],
) -> Runs:
    owner = await make_account()
    return Runs(client, api_sessions, owner, await make_project(owner))


# -- POST /projects/{id}/runs -----------------------------------------------------------------------
async def test_a_retried_trigger_gets_the_first_run_and_creates_nothing_more(runs: Runs) -> None:
    key = str(uuid.uuid4())
    first = await runs.trigger(key, {"ref": "main", "variables": {"A": "1", "B": "2"}})
    assert first.status_code == 202, first.text
    assert REPLAYED not in first.headers
    # The retry's body has other key order and white space: it is the same request.
    again = json.dumps({"variables": {"B": "2", "A": "1"}, "ref": "main"}, indent=2).encode()
    headers = {**runs.owner.headers, "Idempotency-Key": key, "Content-Type": "application/json"}
    retried = await runs.client.post(runs.url, content=again, headers=headers)
    assert retried.status_code == 202, retried.text
    assert retried.headers[REPLAYED] == "true"
    assert retried.json() == first.json()
    location = f"/api/v1/runs/{first.json()['run_id']}"
    assert retried.headers["location"] == first.headers["location"] == location
    assert retried.headers["content-type"] == "application/json"
    third = await runs.trigger(key, {"ref": "main", "variables": {"A": "1", "B": "2"}})
    assert (third.json()["run_id"], third.json()["number"]) == (
        first.json()["run_id"],
        first.json()["number"],
    )
    assert await runs.count() == 1
    assert await runs.requested_events() == 1


async def test_without_a_key_each_trigger_is_a_new_run(runs: Runs) -> None:
    answers = [await runs.trigger(None) for _ in range(2)]
    assert [a.status_code for a in answers] == [202, 202]
    assert answers[0].json()["run_id"] != answers[1].json()["run_id"]
    assert all(REPLAYED not in a.headers for a in answers)
    assert await runs.count() == 2


async def test_the_same_key_with_another_body_or_endpoint_is_a_422_problem(
    runs: Runs, make_project: MakeProject
) -> None:
    key = str(uuid.uuid4())
    assert (await runs.trigger(key)).status_code == 202
    _assert_reused(await runs.trigger(key, {"ref": "develop"}))
    _assert_reused(await runs.trigger(key, {"ref": "main", "sha": "abcdef1"}))
    other = Runs(runs.client, runs.sessions, runs.owner, await make_project(runs.owner))
    _assert_reused(await other.trigger(key))
    project = {"name": f"p-{secrets.token_hex(4)}", "repo_url": "/r"}
    _assert_reused(await runs.client.post("/api/v1/projects", json=project, headers=_key(runs.owner, key)))
    assert await runs.count() == 1
    assert await other.count() == 0


async def test_the_same_key_from_another_user_or_api_token_is_another_request(
    runs: Runs, make_account: MakeAccount
) -> None:
    client, developer = runs.client, await make_account()
    member = await client.put(
        f"/api/v1/projects/{runs.project['id']}/members/{developer.id}",
        json={"role": "developer"},
        headers=runs.owner.headers,
    )
    assert member.status_code == 200, member.text
    minted = await client.post(
        "/api/v1/tokens", json={"name": "ci", "scopes": ["trigger"]}, headers=runs.owner.headers
    )
    assert minted.status_code == 201, minted.text
    script = Account(runs.owner.id, runs.owner.email, "", {"access_token": minted.json()["token"]})
    key = str(uuid.uuid4())
    answers = [await runs.trigger(key, by=who) for who in (runs.owner, developer, script)]
    assert [a.status_code for a in answers] == [202, 202, 202]
    assert all(REPLAYED not in a.headers for a in answers)
    assert len({a.json()["run_id"] for a in answers}) == 3
    assert await runs.count() == 3


async def test_an_error_answer_is_not_remembered_so_the_retry_runs(
    runs: Runs, make_project: MakeProject
) -> None:
    key = str(uuid.uuid4())
    refused = await runs.trigger(key, {"ref": "bad ref with spaces"})
    assert refused.status_code == 422, refused.text
    assert refused.json()["type"] == "urn:comet:problem:validation-error"
    fixed = await runs.trigger(key)
    assert fixed.status_code == 202, fixed.text
    assert REPLAYED not in fixed.headers
    assert await runs.count() == 1

    # The same body, refused for the state of things (409), then accepted once that changed.
    client, taken, headers = runs.client, await make_project(runs.owner), _key(runs.owner)
    body = {"name": taken["name"], "repo_url": "/srv/git/demo.git"}
    assert (await client.post("/api/v1/projects", json=body, headers=headers)).status_code == 409
    deleted = await client.delete(f"/api/v1/projects/{taken['id']}", headers=runs.owner.headers)
    assert deleted.status_code == 204, deleted.text
    created = await client.post("/api/v1/projects", json=body, headers=headers)
    assert created.status_code == 201, created.text
    assert REPLAYED not in created.headers
    assert created.json()["id"] != taken["id"]


async def test_concurrent_identical_triggers_create_one_run(runs: Runs) -> None:
    key = str(uuid.uuid4())
    answers = await asyncio.gather(*(runs.trigger(key) for _ in range(4)))
    assert [a.status_code for a in answers] == [202] * 4, [a.text for a in answers]
    assert len({a.json()["run_id"] for a in answers}) == 1
    assert sorted(a.headers.get(REPLAYED, "-") for a in answers) == ["-", "true", "true", "true"]
    assert await runs.count() == 1
    assert await runs.requested_events() == 1


async def test_concurrent_identical_project_creations_create_one_project(
    client: httpx.AsyncClient, make_account: MakeAccount, api_sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Without the key's lock the second would wait on the first's name and answer 409."""
    headers = _key(await make_account())
    body = {"name": f"p-{secrets.token_hex(4)}", "repo_url": "/r.git"}
    answers = await asyncio.gather(
        *(client.post("/api/v1/projects", json=body, headers=headers) for _ in range(3))
    )
    assert [a.status_code for a in answers] == [201] * 3, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert await _count(api_sessions, "SELECT count(*) FROM projects WHERE name = :n", n=body["name"]) == 1


async def test_an_expired_key_no_longer_replays(runs: Runs) -> None:
    key = str(uuid.uuid4())
    first = await runs.trigger(key)
    async with runs.sessions.begin() as session:
        await session.execute(
            text("UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = :k"),
            {"k": key},
        )
    second = await runs.trigger(key)
    assert second.status_code == 202, second.text
    assert REPLAYED not in second.headers
    assert second.json()["run_id"] != first.json()["run_id"]
    third = await runs.trigger(key)
    assert third.headers[REPLAYED] == "true"
    assert third.json() == second.json()
    assert await runs.count() == 2
    assert await _count(runs.sessions, "SELECT count(*) FROM idempotency_keys WHERE key = :k", k=key) == 1


async def test_storing_a_key_purges_a_batch_of_expired_ones(runs: Runs) -> None:
    scope = f"user:{uuid.uuid4()}"
    async with runs.sessions.begin() as session:
        for n in range(3):
            await idempotency.save(session, scope, f"old-{n}", StoredAnswer("f" * 64, 201, {}, {}))
        await session.execute(
            text("UPDATE idempotency_keys SET expires_at = '2000-01-01Z' WHERE scope = :s"), {"s": scope}
        )
    assert (await runs.trigger(str(uuid.uuid4()))).status_code == 202
    assert await _count(runs.sessions, "SELECT count(*) FROM idempotency_keys WHERE scope = :s", s=scope) == 0


async def test_a_key_the_lock_did_not_see_loses_at_commit_and_answers_the_winners_record(
    api_app: FastAPI, runs: Runs
) -> None:
    """The fallback behind the lock: a record committed by another transaction while this one was
    creating its run. The insert waits for the winner, hits the unique constraint, and everything
    this transaction created is rolled back; the winner's answer (or a 422) is the answer."""
    scope, key = f"user:{runs.owner.id}", str(uuid.uuid4())
    fp = fingerprint("POST", runs.url, "", b'{"ref":"main"}')
    winner = StoredAnswer(fp, 202, {"run_id": "the winner's"}, {"Location": "/api/v1/runs/winner"})
    project_id = uuid.UUID(runs.project["id"])

    async def lose(claimed: str) -> None:
        async with runs.sessions() as session:
            run = await create_run(
                session,
                api_app.state.backbone.topics,
                project_id=project_id,
                ref="refs/heads/main",
                sha=None,
                trigger={"kind": "api"},
                variables={},
            )
            mine = RunAccepted(
                run_id=run.id, project_id=project_id, number=run.number, ref=run.ref, sha=None, url="/"
            )
            await IdempotentRequest(session, Response(), 202, Claim(scope, key, claimed)).commit(mine)

    async with runs.sessions() as first:
        await idempotency.save(first, scope, key, winner)  # not committed yet
        loser = asyncio.create_task(lose(fp))
        await asyncio.sleep(0.3)
        assert not loser.done(), "the second insert should wait for the first transaction"
        await first.commit()
    with pytest.raises(Replay) as replayed:
        await loser
    assert replayed.value.answer == winner
    with pytest.raises(IdempotencyKeyReused):
        await lose("0" * 64)
    assert await runs.count() == 0
    assert await runs.requested_events() == 0


# -- POST /projects, /tokens, /users, /projects/{id}/integrations -----------------------------------
async def _post_twice(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any], httpx.Response]:
    """The same creating request twice: both 201, the second a replay. Their bodies, and the replay."""
    first = await client.post(url, json=body, headers=headers)
    assert first.status_code == 201, first.text
    assert REPLAYED not in first.headers
    retried = await client.post(url, json=body, headers=headers)
    assert retried.status_code == 201, retried.text
    assert retried.headers[REPLAYED] == "true"
    assert retried.headers.get("location") == first.headers.get("location")
    return first.json(), retried.json(), retried


async def _stored_anywhere(sessions: async_sessionmaker[AsyncSession], secret: str) -> int:
    sql = "SELECT count(*) FROM idempotency_keys WHERE response_body::text LIKE :s"
    return await _count(sessions, sql, s=f"%{secret}%")


async def test_a_retried_project_creation_gets_the_project_but_never_its_secret_again(
    runs: Runs,
) -> None:
    body = {"name": f"p-{secrets.token_hex(4)}", "repo_url": "/srv/git/demo.git"}
    first, replayed, response = await _post_twice(runs.client, "/api/v1/projects", body, _key(runs.owner))
    assert first["webhook_secret"]
    assert replayed == {**first, "webhook_secret": None}
    assert response.headers["location"] == f"/api/v1/projects/{first['id']}"
    assert await _count(runs.sessions, "SELECT count(*) FROM projects WHERE name = :n", n=body["name"]) == 1
    assert await _stored_anywhere(runs.sessions, first["webhook_secret"]) == 0


async def test_a_retried_token_creation_answers_the_same_token_shown_only_the_first_time(runs: Runs) -> None:
    headers = _key(runs.owner)
    body = {"name": f"deploy-{secrets.token_hex(3)}", "scopes": ["trigger"], "expires_in_days": 7}
    first, replayed, _ = await _post_twice(runs.client, "/api/v1/tokens", body, headers)
    token = first["token"]
    assert token.startswith("comet_pat_")
    assert replayed == {**first, "token": None}
    assert await _count(runs.sessions, "SELECT count(*) FROM api_tokens WHERE name = :n", n=body["name"]) == 1
    assert await _stored_anywhere(runs.sessions, token[16:]) == 0, "the token's secret part was stored"
    me = await runs.client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    _assert_reused(
        await runs.client.post("/api/v1/tokens", json={**body, "scopes": ["read"]}, headers=headers)
    )


async def test_a_retried_user_creation_answers_the_same_user(
    client: httpx.AsyncClient, make_account: MakeAccount, api_sessions: async_sessionmaker[AsyncSession]
) -> None:
    email = f"new-{secrets.token_hex(4)}@example.com"
    headers = _key(await make_account(admin=True))
    first, replayed, response = await _post_twice(client, "/api/v1/users", {"email": email}, headers)
    assert replayed == first
    assert response.headers["location"] == f"/api/v1/users/{first['id']}"
    assert await _count(api_sessions, "SELECT count(*) FROM users WHERE email = :e", e=email) == 1


async def test_a_retried_integration_setup_answers_the_same_integration(runs: Runs) -> None:
    url = f"/api/v1/projects/{runs.project['id']}/integrations"
    body = {"kind": "commit_status", "token": "provider-token"}
    first, replayed, _ = await _post_twice(runs.client, url, body, _key(runs.owner))
    assert replayed == first
    # Had the retry run, it would have replaced the integration with a new one (a new id).
    integrations = await runs.client.get(url, headers=runs.owner.headers)
    assert [i["id"] for i in integrations.json()["data"]] == [first["id"]]
    assert await _stored_anywhere(runs.sessions, "provider-token") == 0


@pytest.mark.parametrize(
    ("key", "message"),
    [(b"k" * 256, "must be at most 255 characters"), ("cl\u00e9".encode(), "must be printable ASCII")],
)
async def test_an_invalid_key_is_a_422_naming_the_header(runs: Runs, key: bytes, message: str) -> None:
    response = await runs.client.post(
        runs.url,
        json={"ref": "main"},
        headers={b"Authorization": runs.owner.headers["Authorization"].encode(), b"Idempotency-Key": key},
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"] == [{"field": "header.Idempotency-Key", "message": message}]
    assert await runs.count() == 0
