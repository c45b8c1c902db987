"""Setting up outbound notifications through the API: a `webhook` shows its signing secret once,
a `slack` URL's token is never shown, and a target that is not https on a public address (outside
COMET_OUTBOUND_ALLOW, empty here) is a 422 naming `body.url`, with nothing created."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import AuditEntry, Integration
from tests.integration.api.conftest import MakeAccount, MakeProject

pytestmark = pytest.mark.integration

PUBLIC = "https://93.184.215.14/hooks/comet"


async def _count(sessions: async_sessionmaker[AsyncSession], project_id: str) -> int:
    async with sessions() as session:
        rows = await session.scalars(
            select(Integration.id).where(Integration.project_id == uuid.UUID(project_id))
        )
        return len(rows.all())


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://hooks.example.com/x", "must use https"),
        ("https://127.0.0.1/x", "resolves to 127.0.0.1, a private, loopback or reserved address"),
        ("https://10.0.0.8/x", "resolves to 10.0.0.8"),
        ("https://[::1]:8443/x", "resolves to ::1"),
        ("https://localhost/x", "a private, loopback or reserved address"),
        ("https://169.254.169.254/latest/meta-data/", "resolves to 169.254.169.254"),
        ("https://user:pw@hooks.example.com/x", "must not carry a user name or password"),
        ("ftp://hooks.example.com/x", "must be an absolute https:// URL"),
    ],
)
async def test_a_target_that_is_not_https_on_a_public_address_is_a_422_naming_the_url(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    make_project: MakeProject,
    api_sessions: async_sessionmaker[AsyncSession],
    url: str,
    says: str,
) -> None:
    owner = await make_account()
    project = await make_project(owner)
    response = await client.post(
        f"/api/v1/projects/{project['id']}/integrations",
        json={"kind": "webhook", "url": url, "events": ["run.failed"]},
        headers=owner.headers,
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    [problem] = response.json()["errors"]
    assert problem["field"] == "body.url"
    assert says in problem["message"]
    assert await _count(api_sessions, project["id"]) == 0


@pytest.mark.parametrize(
    ("events", "field"),
    [([], "body.events"), (["run.exploded"], "body.events[0]"), (None, "body.events")],
)
async def test_an_event_filter_that_names_no_known_event_is_a_422(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    make_project: MakeProject,
    events: list[str] | None,
    field: str,
) -> None:
    owner = await make_account()
    project = await make_project(owner)
    body: dict[str, Any] = {"kind": "slack", "url": PUBLIC}
    if events is not None:
        body["events"] = events
    response = await client.post(
        f"/api/v1/projects/{project['id']}/integrations", json=body, headers=owner.headers
    )
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]


async def test_a_webhook_shows_its_secret_once_and_is_listed_and_audited(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    make_project: MakeProject,
    api_sessions: async_sessionmaker[AsyncSession],
) -> None:
    owner = await make_account()
    project = await make_project(owner)
    url = f"/api/v1/projects/{project['id']}/integrations"
    body = {
        "kind": "webhook",
        "url": PUBLIC + "?token=abc",
        "events": ["run.failed", "run.failed", "test.flaky"],
    }
    key = {"Idempotency-Key": secrets.token_hex(8)}
    created = await client.post(url, json=body, headers=owner.headers | key)
    assert created.status_code == 201, created.text
    hook = created.json()
    assert len(hook["secret"]) == 64
    assert hook["url"] == PUBLIC, "the query is not shown"
    assert hook["events"] == ["run.failed", "test.flaky"]

    replay = await client.post(url, json=body, headers=owner.headers | key)
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == hook["id"]
    assert replay.json()["secret"] is None, "a replay never shows the secret again"

    listed = (await client.get(url, headers=owner.headers)).json()["data"]
    assert [(i["id"], i["kind"], i["secret"]) for i in listed] == [(hook["id"], "webhook", None)]
    async with api_sessions() as session:
        row = await session.get(Integration, uuid.UUID(hook["id"]))
        assert row is not None
        assert row.secret_ciphertext is not None
        assert hook["secret"].encode() not in row.secret_ciphertext, "stored encrypted"
        assert b"token=abc" not in row.secret_ciphertext
        audit = (await session.scalars(select(AuditEntry).where(AuditEntry.target_id == hook["id"]))).all()
    assert [(a.action, a.details["kind"]) for a in audit] == [("project.integration_set", "webhook")]


async def test_a_slack_url_keeps_its_token_out_of_every_answer(
    client: httpx.AsyncClient, make_account: MakeAccount, make_project: MakeProject
) -> None:
    owner = await make_account()
    project = await make_project(owner)
    url = f"/api/v1/projects/{project['id']}/integrations"
    body = {
        "kind": "slack",
        "url": "https://93.184.215.14/services/T0/B0/SECRETTOKEN",
        "events": ["run.failed"],
    }
    created = await client.post(url, json=body, headers=owner.headers)
    assert created.status_code == 201, created.text
    assert created.json()["url"] == "https://93.184.215.14/…"
    assert created.json()["secret"] is None
    assert "SECRETTOKEN" not in (await client.get(url, headers=owner.headers)).text


async def test_deliveries_of_an_unknown_integration_are_404_and_a_bad_cursor_is_a_422(
    client: httpx.AsyncClient, make_account: MakeAccount, make_project: MakeProject
) -> None:
    owner = await make_account()
    project = await make_project(owner)
    base = f"/api/v1/projects/{project['id']}/integrations"
    missing = await client.get(f"{base}/{uuid.uuid4()}/deliveries", headers=owner.headers)
    assert missing.status_code == 404
    created = await client.post(
        base, json={"kind": "webhook", "url": PUBLIC, "events": ["run.failed"]}, headers=owner.headers
    )
    deliveries = f"{base}/{created.json()['id']}/deliveries"
    assert (await client.get(deliveries, headers=owner.headers)).json() == {"data": [], "next_cursor": None}
    bad = await client.get(deliveries, params={"cursor": "not-a-cursor!"}, headers=owner.headers)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "query.cursor"


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"kind": "webhook", "events": ["run.failed"]}, "body.url", "is required"),
        ({"kind": "commit_status"}, "body.token", "is required"),
        (
            {"kind": "commit_status", "token": "t", "url": PUBLIC},
            "body.url",
            "is not used by kind commit_status",
        ),
        (
            {"kind": "slack", "url": PUBLIC, "events": ["run.failed"], "token": "t"},
            "body.token",
            "is not used",
        ),
    ],
)
async def test_each_kind_names_the_fields_it_lacks_or_does_not_use(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    make_project: MakeProject,
    body: dict[str, Any],
    field: str,
    says: str,
) -> None:
    owner = await make_account()
    project = await make_project(owner)
    response = await client.post(
        f"/api/v1/projects/{project['id']}/integrations", json=body, headers=owner.headers
    )
    assert response.status_code == 422, response.text
    [problem] = response.json()["errors"]
    assert problem["field"] == field
    assert says in problem["message"]
