"""Runs through the API: trigger (durable at once, published by the relay), read, list, cancel,
retry, stage logs (stored and followed), and the run's events."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.app import create_app
from db.models import LogChunk, Stage, StageAttempt
from tests.integration.api.conftest import Account, MakeAccount, MakeProject, settings_for

pytestmark = pytest.mark.integration


async def _trigger(client: httpx.AsyncClient, account: Account, project: dict[str, Any], **body: Any) -> str:
    response = await client.post(
        f"/api/v1/projects/{project['id']}/runs", json={"ref": "main", **body}, headers=account.headers
    )
    assert response.status_code == 202, response.text
    run_id: str = response.json()["run_id"]
    return run_id


async def _outbox(sessions: async_sessionmaker[AsyncSession], run_id: str) -> list[Any]:
    async with sessions() as session:
        rows = await session.execute(
            text("SELECT event_type, topic, key, published_at FROM outbox WHERE run_id = :id ORDER BY id"),
            {"id": run_id},
        )
        return list(rows)


async def _set_status(sessions: async_sessionmaker[AsyncSession], run_id: str, status: str) -> None:
    async with sessions.begin() as session:
        await session.execute(text("UPDATE runs SET status = :s WHERE id = :id"), {"s": status, "id": run_id})


async def test_a_triggered_run_is_202_readable_at_once_and_in_the_outbox(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    make_project: MakeProject,
    api_sessions: async_sessionmaker[AsyncSession],
) -> None:
    owner = await make_account()
    project = await make_project(owner)
    response = await client.post(
        f"/api/v1/projects/{project['id']}/runs",
        json={"ref": "main", "sha": "ABCDEF1", "variables": {"GREETING": "hi"}},
        headers=owner.headers,
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "requested"
    assert accepted["ref"] == "refs/heads/main"
    assert accepted["sha"] == "abcdef1"
    run_id = accepted["run_id"]
    assert response.headers["location"] == f"/api/v1/runs/{run_id}"

    run = (await client.get(f"/api/v1/runs/{run_id}", headers=owner.headers)).json()
    assert run["id"] == run_id
    assert run["project_id"] == project["id"]
    assert run["status"] == "requested"
    assert run["trigger"] == {"kind": "api", "actor": owner.id, "event": "manual"}
    assert run["stages"] == []
    assert run["created_at"].endswith(("Z", "+00:00"))
    for field in ("failure_reason", "started_at", "finished_at"):
        assert run[field] is None

    events = await _outbox(api_sessions, run_id)
    assert [e.event_type for e in events] == ["run.requested"]
    assert events[0].topic.endswith(".run-commands")
    assert events[0].key == run_id


async def test_the_relay_publishes_a_triggered_run_to_kafka(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    make_project: MakeProject,
    api_sessions: async_sessionmaker[AsyncSession],
) -> None:
    owner = await make_account()
    run_id = await _trigger(client, owner, await make_project(owner))
    deadline = time.monotonic() + 60
    while (await _outbox(api_sessions, run_id))[0].published_at is None:
        assert time.monotonic() < deadline, "the outbox relay never published the run"
        await asyncio.sleep(0.1)


async def test_a_run_is_accepted_while_kafka_is_down(
    api_db_url: str, make_account: MakeAccount, make_project: MakeProject
) -> None:
    owner = await make_account()
    project = await make_project(owner)
    app = create_app(settings_for(api_db_url, kafka_bootstrap_servers="127.0.0.1:1"))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://down.test") as down,
    ):
        # Tokens are signed with the other app's secret: log in again here.
        login = await down.post("/api/v1/auth/login", json={"email": owner.email, "password": owner.password})
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        started = time.monotonic()
        response = await down.post(
            f"/api/v1/projects/{project['id']}/runs", json={"ref": "main"}, headers=headers
        )
        assert response.status_code == 202, response.text
        assert time.monotonic() - started < 5
        run = await down.get(f"/api/v1/runs/{response.json()['run_id']}", headers=headers)
        assert run.json()["status"] == "requested"
        ready = await down.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"database": "ok", "kafka": "unavailable"}
        assert "kafka" in ready.json()["detail"]


async def test_a_bad_ref_is_a_422_problem_naming_the_field(
    client: httpx.AsyncClient, make_account: MakeAccount, make_project: MakeProject
) -> None:
    owner = await make_account()
    project = await make_project(owner)
    response = await client.post(
        f"/api/v1/projects/{project['id']}/runs",
        json={"ref": "--upload-pack=touch /tmp/x", "variables": {"COMET_SHA": "x"}},
        headers=owner.headers,
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    fields = {e["field"]: e["message"] for e in response.json()["errors"]}
    assert set(fields) == {"body.ref", "body.variables"}
    assert "'-'" in fields["body.ref"]


async def test_cancelling_a_requested_run_records_a_cancel_event(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    make_project: MakeProject,
    api_sessions: async_sessionmaker[AsyncSession],
) -> None:
    owner = await make_account()
    run_id = await _trigger(client, owner, await make_project(owner))
    response = await client.post(f"/api/v1/runs/{run_id}/cancel", headers=owner.headers)
    assert response.status_code == 202, response.text
    assert response.json()["requested"] == "cancel"
    events = await _outbox(api_sessions, run_id)
    assert [e.event_type for e in events] == ["run.requested", "run.cancel_requested"]
    assert events[1].key == run_id
    assert events[1].topic.endswith(".run-commands")


async def test_a_finished_run_cannot_be_cancelled_and_only_a_failed_one_retried(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    make_project: MakeProject,
    api_sessions: async_sessionmaker[AsyncSession],
) -> None:
    owner = await make_account()
    run_id = await _trigger(client, owner, await make_project(owner))
    assert (await client.post(f"/api/v1/runs/{run_id}/retry", headers=owner.headers)).status_code == 409
    await _set_status(api_sessions, run_id, "succeeded")
    cancel = await client.post(f"/api/v1/runs/{run_id}/cancel", headers=owner.headers)
    assert cancel.status_code == 409
    assert "finished" in cancel.json()["detail"]

    await _set_status(api_sessions, run_id, "failed")
    await _add_stage(api_sessions, run_id, "build", status="failed")
    retry = await client.post(f"/api/v1/runs/{run_id}/retry", headers=owner.headers)
    assert retry.status_code == 202, retry.text
    assert [e.event_type for e in await _outbox(api_sessions, run_id)][-1] == "run.retry_requested"


async def test_a_run_of_a_project_you_cannot_see_is_404(
    client: httpx.AsyncClient, make_account: MakeAccount, make_project: MakeProject
) -> None:
    owner, stranger = await make_account(), await make_account()
    run_id = await _trigger(client, owner, await make_project(owner))
    for method, path in (
        ("GET", f"/api/v1/runs/{run_id}"),
        ("POST", f"/api/v1/runs/{run_id}/cancel"),
        ("GET", f"/api/v1/runs/{run_id}/events"),
        ("GET", f"/api/v1/runs/{run_id}/stages/build/logs"),
    ):
        response = await client.request(method, path, headers=stranger.headers)
        assert response.status_code == 404, (method, path)
    assert (await client.get(f"/api/v1/runs/{uuid.uuid4()}", headers=owner.headers)).status_code == 404


async def test_runs_are_listed_newest_first_page_by_page_and_filtered(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    make_project: MakeProject,
    api_sessions: async_sessionmaker[AsyncSession],
) -> None:
    owner = await make_account()
    project = await make_project(owner)
    runs = [await _trigger(client, owner, project) for _ in range(3)]
    tagged = await _trigger(client, owner, project, ref="refs/tags/v1")
    await _set_status(api_sessions, runs[0], "failed")
    base = f"/api/v1/projects/{project['id']}/runs"

    first = (await client.get(f"{base}?limit=2", headers=owner.headers)).json()
    assert [r["id"] for r in first["data"]] == [tagged, runs[2]]
    rest = (await client.get(f"{base}?limit=2&cursor={first['next_cursor']}", headers=owner.headers)).json()
    assert [r["id"] for r in rest["data"]] == [runs[1], runs[0]]
    assert rest["next_cursor"] is None

    by_ref = (await client.get(f"{base}?ref=main", headers=owner.headers)).json()
    assert [r["id"] for r in by_ref["data"]] == runs[::-1]
    by_status = (await client.get(f"{base}?status=failed", headers=owner.headers)).json()
    assert [r["id"] for r in by_status["data"]] == [runs[0]]

    bad = await client.get(f"{base}?status=bogus", headers=owner.headers)
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"query.status"}
    malformed = await client.get(f"{base}?cursor=%%%", headers=owner.headers)  # not the documented shape
    assert malformed.status_code == 422
    assert {e["field"] for e in malformed.json()["errors"]} == {"query.cursor"}
    bad_cursor = await client.get(f"{base}?cursor=bm90LWEtdXVpZA", headers=owner.headers)
    assert bad_cursor.status_code == 422
    assert bad_cursor.json()["errors"][0]["field"] == "query.cursor"


async def _add_stage(
    sessions: async_sessionmaker[AsyncSession],
    run_id: str,
    name: str,
    *,
    status: str = "running",
    attempt_status: str | None = None,
    chunks: tuple[str, ...] = (),
) -> tuple[uuid.UUID, uuid.UUID]:
    async with sessions.begin() as session:
        stage = Stage(
            run_id=uuid.UUID(run_id),
            name=name,
            base_name=name,
            position=0,
            matrix={},
            status=status,
            needs=["lint"],
            pool="default",
            spec={},
            attempt=1,
        )
        session.add(stage)
        await session.flush()
        attempt = StageAttempt(
            run_id=stage.run_id,
            stage_id=stage.id,
            number=1,
            status=attempt_status or status,
            pool="default",
            worker_id="worker-7",
        )
        session.add(attempt)
        await session.flush()
        session.add_all(LogChunk(attempt_id=attempt.id, seq=i, data=d) for i, d in enumerate(chunks))
        return stage.id, attempt.id


async def test_a_run_shows_its_stages_with_the_current_attempts_worker(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    make_project: MakeProject,
    api_sessions: async_sessionmaker[AsyncSession],
) -> None:
    owner = await make_account()
    run_id = await _trigger(client, owner, await make_project(owner))
    await _add_stage(api_sessions, run_id, "unit[python=3.11]")
    run = (await client.get(f"/api/v1/runs/{run_id}", headers=owner.headers)).json()
    (stage,) = run["stages"]
    assert stage["name"] == "unit[python=3.11]"
    assert stage["status"] == "running"
    assert stage["attempt"] == 1
    assert stage["worker_id"] == "worker-7"
    assert stage["needs"] == ["lint"]
    assert [a["number"] for a in stage["attempts"]] == [1]
    for field in ("exit_code", "failure_reason", "queued_at", "started_at", "finished_at"):
        assert field in stage


async def test_a_stage_log_is_served_as_text(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    make_project: MakeProject,
    api_sessions: async_sessionmaker[AsyncSession],
) -> None:
    owner = await make_account()
    run_id = await _trigger(client, owner, await make_project(owner))
    await _add_stage(api_sessions, run_id, "build", status="succeeded", chunks=("hello\n", "world\n"))
    response = await client.get(f"/api/v1/runs/{run_id}/stages/build/logs", headers=owner.headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "hello\nworld\n"
    missing = await client.get(f"/api/v1/runs/{run_id}/stages/build/logs?attempt=2", headers=owner.headers)
    assert missing.status_code == 404
    unknown = await client.get(f"/api/v1/runs/{run_id}/stages/nope/logs", headers=owner.headers)
    assert unknown.status_code == 404


async def test_a_followed_log_streams_new_chunks_until_the_stage_ends(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    make_project: MakeProject,
    api_sessions: async_sessionmaker[AsyncSession],
) -> None:
    owner = await make_account()
    run_id = await _trigger(client, owner, await make_project(owner))
    stage_id, attempt_id = await _add_stage(api_sessions, run_id, "build", chunks=("line 1\n",))

    async def worker_writes_then_finishes() -> None:
        await asyncio.sleep(0.5)
        async with api_sessions.begin() as session:
            session.add(LogChunk(attempt_id=attempt_id, seq=1, data="line 2\nline 3\n"))
        await asyncio.sleep(0.5)
        async with api_sessions.begin() as session:
            session.add(LogChunk(attempt_id=attempt_id, seq=2, data="done\n"))
            await session.execute(
                text("UPDATE stage_attempts SET status = 'succeeded', exit_code = 0 WHERE id = :id"),
                {"id": attempt_id},
            )
            await session.execute(
                text("UPDATE stages SET status = 'succeeded' WHERE id = :id"), {"id": stage_id}
            )

    writer = asyncio.create_task(worker_writes_then_finishes())
    response = await asyncio.wait_for(
        client.get(
            f"/api/v1/runs/{run_id}/stages/build/logs",
            headers={**owner.headers, "Accept": "text/event-stream"},
        ),
        30,
    )
    await writer
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = response.text.split("\n\n")
    assert frames[0] == "id: 1:0\ndata: line 1\ndata: "
    assert "id: 1:1\ndata: line 2\ndata: line 3\ndata: " in frames
    assert "id: 1:2\ndata: done\ndata: " in frames
    assert frames[-2].startswith("event: end\ndata: ")
    assert '"stage_status":"succeeded"' in frames[-2]

    followed = await client.get(f"/api/v1/runs/{run_id}/stages/build/logs?follow=true", headers=owner.headers)
    assert followed.text == "line 1\nline 2\nline 3\ndone\n"


async def test_the_events_of_a_run_come_in_order(
    client: httpx.AsyncClient, make_account: MakeAccount, make_project: MakeProject
) -> None:
    owner = await make_account()
    run_id = await _trigger(client, owner, await make_project(owner))
    await client.post(f"/api/v1/runs/{run_id}/cancel", headers=owner.headers)
    page = (await client.get(f"/api/v1/runs/{run_id}/events", headers=owner.headers)).json()
    assert [e["type"] for e in page["data"]] == ["run.requested", "run.cancel_requested"]
    assert page["data"][0]["payload"]["run_id"] == run_id
    assert page["data"][0]["seq"] < page["data"][1]["seq"]
    first = (await client.get(f"/api/v1/runs/{run_id}/events?limit=1", headers=owner.headers)).json()
    assert first["next_cursor"] is not None
    second = (
        await client.get(
            f"/api/v1/runs/{run_id}/events?limit=1&cursor={first['next_cursor']}", headers=owner.headers
        )
    ).json()
    assert [e["type"] for e in second["data"]] == ["run.cancel_requested"]


async def test_a_nul_byte_in_a_stage_name_is_a_422_never_a_500(
    client: httpx.AsyncClient, make_account: MakeAccount, make_project: MakeProject
) -> None:
    owner = await make_account()
    project = await make_project(owner)
    run_id = await _trigger(client, owner, project)
    response = await client.get(f"/api/v1/runs/{run_id}/stages/a%00b/logs", headers=owner.headers)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "NUL" in response.json()["detail"]
