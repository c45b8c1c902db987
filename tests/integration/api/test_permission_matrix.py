"""The endpoint-by-role matrix and the endpoint-by-token-scope matrix, generated from the permission
table (`api/permissions.py`): every cell is its own test.

For each endpoint inside a project or a run, and each caller — owner, maintainer, developer,
viewer, a non-member, a global admin — the expected outcome is computed from the table: a
non-member gets 404 (the project's existence does not leak), a role below the action's least role
gets 403, anyone else gets the endpoint's success. The same for personal API tokens of the owner
with each scope. A route that is added inside a project or a run without a line here fails
`test_every_project_and_run_endpoint_is_in_the_matrix`.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.auth.passwords import hash_password
from api.permissions import PERMISSIONS, Action, Scope, allows, scope_needed, scoped_routes
from db.models import Deployment, LogChunk, Stage, StageAttempt, TestCase, WebhookDelivery
from db.repositories import users
from schemas.roles import Role

pytestmark = pytest.mark.integration

CALLERS = ("owner", "maintainer", "developer", "viewer", "non_member", "admin")


@dataclass
class Caller:
    name: str
    user_id: str
    headers: dict[str, str]


@dataclass
class World:
    client: httpx.AsyncClient
    sessions: async_sessionmaker[AsyncSession]
    callers: dict[str, Caller]
    project_id: str = ""
    run_id: str = ""
    tokens: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def owner(self) -> Caller:
        return self.callers["owner"]

    async def new_project(self) -> str:
        """A project of `owner` with the maintainer, developer and viewer as members."""
        body = {"name": f"m-{secrets.token_hex(5)}", "repo_url": "/srv/git/demo.git"}
        created = await self.client.post("/api/v1/projects", json=body, headers=self.owner.headers)
        assert created.status_code == 201, created.text
        project_id = str(created.json()["id"])
        for role in ("maintainer", "developer", "viewer"):
            member = self.callers[role]
            response = await self.client.put(
                f"/api/v1/projects/{project_id}/members/{member.user_id}",
                json={"role": role},
                headers=self.owner.headers,
            )
            assert response.status_code == 200, response.text
        return project_id

    async def new_run(self) -> str:
        response = await self.client.post(
            f"/api/v1/projects/{self.project_id}/runs", json={"ref": "main"}, headers=self.owner.headers
        )
        assert response.status_code == 202, response.text
        return str(response.json()["run_id"])


async def _login_as_new_user(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], name: str, *, admin: bool = False
) -> Caller:
    email = f"{name}-{secrets.token_hex(4)}@example.com"
    password = f"matrix password {secrets.token_hex(6)}"
    async with sessions() as session:
        user = await users.create_user(
            session, email=email, password_hash=hash_password(password), is_admin=admin
        )
        await session.commit()
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return Caller(name, str(user.id), {"Authorization": f"Bearer {response.json()['access_token']}"})


@pytest.fixture(scope="module")
async def world(api_app: FastAPI, api_sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[World]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(api_app), base_url="http://comet.test"
    ) as client:
        callers = {
            name: await _login_as_new_user(client, api_sessions, name, admin=name == "admin")
            for name in CALLERS
        }
        world = World(client, api_sessions, callers)
        world.project_id = await world.new_project()
        world.run_id = await world.new_run()
        await _add_stage(api_sessions, world.run_id, "build")
        for scope in Scope:
            created = await client.post(
                "/api/v1/tokens",
                json={"name": f"matrix {scope.value}", "scopes": [scope.value]},
                headers=world.owner.headers,
            )
            assert created.status_code == 201, created.text
            world.tokens[scope.value] = {"Authorization": f"Bearer {created.json()['token']}"}
        yield world


async def _add_stage(
    sessions: async_sessionmaker[AsyncSession], run_id: str, name: str, status: str = "succeeded"
) -> None:
    async with sessions.begin() as session:
        stage = Stage(
            run_id=uuid.UUID(run_id),
            name=name,
            base_name=name,
            position=0,
            matrix={},
            status=status,
            needs=[],
            pool="default",
            spec={},
            attempt=1,
        )
        session.add(stage)
        await session.flush()
        if status == "waiting_approval":
            stage.attempt = 0
            return  # a gated stage has no attempt until it is approved
        attempt = StageAttempt(
            run_id=stage.run_id, stage_id=stage.id, number=1, status=status, pool="default"
        )
        session.add(attempt)
        await session.flush()
        session.add(LogChunk(attempt_id=attempt.id, seq=0, data="built\n"))


# -- the endpoints ------------------------------------------------------------------------------------
Prepare = Callable[[World], Awaitable[dict[str, str]]]


async def _nothing(world: World) -> dict[str, str]:
    return {}


async def _fresh_project(world: World) -> dict[str, str]:
    return {"project_id": await world.new_project()}


async def _fresh_run(world: World) -> dict[str, str]:
    return {"run_id": await world.new_run()}


async def _failed_run(world: World) -> dict[str, str]:
    run_id = await world.new_run()
    await _add_stage(world.sessions, run_id, "unit", status="failed")
    async with world.sessions.begin() as session:
        await session.execute(text("UPDATE runs SET status = 'failed' WHERE id = :id"), {"id": run_id})
    return {"run_id": run_id}


async def _gated_run(world: World) -> dict[str, str]:
    run_id = await world.new_run()
    await _add_stage(world.sessions, run_id, "deploy", status="waiting_approval")
    async with world.sessions.begin() as session:
        await session.execute(text("UPDATE runs SET status = 'running' WHERE id = :id"), {"id": run_id})
    return {"run_id": run_id, "stage": "deploy"}


async def _fresh_user(world: World) -> dict[str, str]:
    async with world.sessions() as session:
        user = await users.create_user(
            session, email=f"target-{secrets.token_hex(4)}@example.com", password_hash=None
        )
        await session.commit()
    return {"user_id": str(user.id)}


async def _secret(world: World) -> dict[str, str]:
    name = f"S_{secrets.token_hex(4).upper()}"
    response = await world.client.put(
        f"/api/v1/projects/{world.project_id}/secrets/{name}",
        json={"value": "x"},
        headers=world.owner.headers,
    )
    assert response.status_code == 204, response.text
    return {"name": name}


async def _integration(world: World) -> dict[str, str]:
    response = await world.client.post(
        f"/api/v1/projects/{world.project_id}/integrations",
        json={"kind": "commit_status", "token": "provider-token"},
        headers=world.owner.headers,
    )
    assert response.status_code == 201, response.text
    return {"integration_id": str(response.json()["id"])}


async def _delivery(world: World) -> dict[str, str]:
    async with world.sessions.begin() as session:
        row = WebhookDelivery(
            provider="github",
            delivery_id=str(uuid.uuid4()),
            project_id=uuid.UUID(world.project_id),
            event="push",
            outcome="accepted",
            headers={},
            body=b"{}",
        )
        session.add(row)
        await session.flush()
        return {"delivery_id": str(row.id)}


async def _test_case(world: World) -> dict[str, str]:
    """A fresh test's case in the run's `build` stage: its key."""
    key = secrets.token_hex(10)
    async with world.sessions.begin() as session:
        attempt = (
            await session.scalars(
                select(StageAttempt).where(StageAttempt.run_id == uuid.UUID(world.run_id)).limit(1)
            )
        ).one()
        session.add(
            TestCase(
                attempt_id=attempt.id,
                project_id=uuid.UUID(world.project_id),
                run_id=attempt.run_id,
                stage_id=attempt.stage_id,
                stage="build",
                attempt=1,
                ref="refs/heads/main",
                sha=None,
                key=key,
                name=f"test_{key}",
                classname="tests.test_matrix",
                status="passed",
                duration_s=0.1,
            )
        )
    return {"key": key}


async def _quarantined(world: World) -> dict[str, str]:
    found = await _test_case(world)
    response = await world.client.put(
        f"/api/v1/projects/{world.project_id}/tests/quarantine/{found['key']}", headers=world.owner.headers
    )
    assert response.status_code == 201, response.text
    return found


async def _suite(world: World) -> dict[str, str]:
    response = await world.client.post(
        f"/api/v1/projects/{world.project_id}/test-suites",
        json={"name": f"suite {secrets.token_hex(4)}", "stages": ["build"]},
        headers=world.owner.headers,
    )
    assert response.status_code == 201, response.text
    return {"suite_id": str(response.json()["id"])}


async def _deployment(world: World, status: str = "succeeded") -> dict[str, str]:
    """A deployment of a fresh stage of the run: succeeded, or waiting at its gate for one approval."""
    name = f"deploy-{secrets.token_hex(4)}"
    waiting = status == "waiting"
    await _add_stage(
        world.sessions, world.run_id, name, status="waiting_approval" if waiting else "succeeded"
    )
    async with world.sessions.begin() as session:
        stage_id = await session.scalar(
            select(Stage.id).where(Stage.run_id == uuid.UUID(world.run_id), Stage.name == name)
        )
        assert stage_id is not None
        row = Deployment(
            project_id=uuid.UUID(world.project_id),
            run_id=uuid.UUID(world.run_id),
            stage_id=stage_id,
            stage=name,
            environment="production",
            status=status,
            ref="refs/heads/main",
            sha="a" * 40,
            required_approvals=1 if waiting else 0,
        )
        session.add(row)
        await session.flush()
        return {"deployment_id": str(row.id), "name": "production"}


async def _waiting_deployment(world: World) -> dict[str, str]:
    return await _deployment(world, "waiting")


async def _environment(world: World) -> dict[str, str]:
    response = await world.client.put(
        f"/api/v1/projects/{world.project_id}/environments/staging", json={}, headers=world.owner.headers
    )
    assert response.status_code == 200, response.text
    return {"name": "staging"}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    action: Action
    ok: frozenset[int]
    prepare: Prepare = _nothing
    body: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return f"{self.method} {self.path.removeprefix('/api/v1')}"


P, R = "/api/v1/projects/{project_id}", "/api/v1/runs/{run_id}"
D = "/api/v1/deployments/{deployment_id}"
ENDPOINTS = [
    Endpoint("GET", P, Action.READ, frozenset({200})),
    Endpoint("PATCH", P, Action.CONFIGURE, frozenset({200}), body={"default_branch": "main"}),
    Endpoint("DELETE", P, Action.DELETE, frozenset({204}), _fresh_project),
    Endpoint(
        "PUT",
        P + "/members/{user_id}",
        Action.MANAGE_MEMBERS,
        frozenset({200}),
        _fresh_user,
        {"role": "viewer"},
    ),
    Endpoint("GET", P + "/runs", Action.READ, frozenset({200})),
    Endpoint("POST", P + "/runs", Action.TRIGGER, frozenset({202}), body={"ref": "main"}),
    Endpoint("GET", P + "/secrets", Action.READ, frozenset({200})),
    Endpoint("PUT", P + "/secrets/{name}", Action.MANAGE_SECRETS, frozenset({204}), _secret, {"value": "y"}),
    Endpoint("DELETE", P + "/secrets/{name}", Action.MANAGE_SECRETS, frozenset({204}), _secret),
    Endpoint("GET", P + "/integrations", Action.READ, frozenset({200})),
    Endpoint(
        "POST",
        P + "/integrations",
        Action.MANAGE_INTEGRATIONS,
        frozenset({201}),
        body={"kind": "commit_status", "token": "provider-token"},
    ),
    Endpoint(
        "DELETE",
        P + "/integrations/{integration_id}",
        Action.MANAGE_INTEGRATIONS,
        frozenset({204}),
        _integration,
    ),
    Endpoint(
        "GET", P + "/integrations/{integration_id}/deliveries", Action.READ, frozenset({200}), _integration
    ),
    Endpoint(
        "POST",
        P + "/integrations",
        Action.MANAGE_INTEGRATIONS,
        frozenset({201}),
        body={"kind": "webhook", "url": "https://93.184.215.14/hooks", "events": ["run.failed"]},
    ),
    Endpoint("GET", P + "/webhooks/deliveries", Action.MANAGE_WEBHOOKS, frozenset({200})),
    Endpoint(
        "POST", P + "/webhooks/deliveries/{delivery_id}/redeliver", Action.REPLAY, frozenset({202}), _delivery
    ),
    Endpoint(
        "POST", P + "/webhooks/replay", Action.REPLAY, frozenset({202}), body={"since": "1h", "dry_run": True}
    ),
    Endpoint("POST", P + "/webhooks/secret/rotate", Action.MANAGE_WEBHOOKS, frozenset({200})),
    Endpoint("GET", P + "/tests/cases/{key}/history", Action.READ, frozenset({200}), _test_case),
    Endpoint("GET", P + "/tests/flaky", Action.READ, frozenset({200})),
    Endpoint("GET", P + "/tests/quarantine", Action.READ, frozenset({200})),
    Endpoint(
        "PUT",
        P + "/tests/quarantine/{key}",
        Action.MANAGE_TESTS,
        frozenset({201}),
        _test_case,
        {"reason": "flaky on CI"},
    ),
    Endpoint("DELETE", P + "/tests/quarantine/{key}", Action.MANAGE_TESTS, frozenset({204}), _quarantined),
    Endpoint("GET", P + "/coverage", Action.READ, frozenset({200})),
    Endpoint("GET", P + "/insights", Action.READ, frozenset({200})),
    Endpoint("GET", P + "/schedules", Action.READ, frozenset({200})),
    Endpoint("GET", P + "/test-suites", Action.READ, frozenset({200})),
    Endpoint(
        "POST",
        P + "/test-suites",
        Action.CONFIGURE,
        frozenset({201}),
        _fresh_project,
        {"name": "nightly", "stages": ["build"], "schedule": {"cron": "0 3 * * *"}},
    ),
    Endpoint("GET", P + "/test-suites/{suite_id}", Action.READ, frozenset({200}), _suite),
    Endpoint(
        "PATCH", P + "/test-suites/{suite_id}", Action.CONFIGURE, frozenset({200}), _suite, {"stages": ["b*"]}
    ),
    Endpoint("DELETE", P + "/test-suites/{suite_id}", Action.CONFIGURE, frozenset({204}), _suite),
    Endpoint("POST", P + "/test-suites/{suite_id}/runs", Action.TRIGGER, frozenset({202}), _suite),
    Endpoint("GET", P + "/environments", Action.READ, frozenset({200})),
    Endpoint("GET", P + "/environments/{name:environment}", Action.READ, frozenset({200}), _environment),
    Endpoint(
        "PUT",
        P + "/environments/{name:environment}",
        Action.CONFIGURE,
        frozenset({200}),
        _environment,
        {"required_approvals": 1},
    ),
    Endpoint(
        "POST",
        P + "/environments/{name}/rollback",
        Action.APPROVE_DEPLOYS,
        frozenset({202}),
        _deployment,
        {"deployment_id": "set by prepare"},
    ),
    Endpoint("GET", P + "/deployments", Action.READ, frozenset({200})),
    Endpoint("GET", D, Action.READ, frozenset({200}), _deployment),
    Endpoint("POST", D + "/approve", Action.APPROVE_DEPLOYS, frozenset({202}), _waiting_deployment, {}),
    Endpoint("POST", D + "/reject", Action.APPROVE_DEPLOYS, frozenset({202}), _waiting_deployment, {}),
    Endpoint("GET", R, Action.READ, frozenset({200})),
    Endpoint("POST", R + "/cancel", Action.CANCEL, frozenset({202}), _fresh_run),
    Endpoint("POST", R + "/retry", Action.RETRY, frozenset({202}), _failed_run),
    Endpoint("POST", R + "/stages/{stage}/approve", Action.APPROVE_DEPLOYS, frozenset({202}), _gated_run),
    Endpoint("GET", R + "/events", Action.READ, frozenset({200})),
    Endpoint("GET", R + "/stages/{stage}/logs", Action.READ, frozenset({200})),
    Endpoint("GET", R + "/commit-statuses", Action.READ, frozenset({200})),
    Endpoint("GET", R + "/tests", Action.READ, frozenset({200})),
    Endpoint("GET", R + "/tests/cases", Action.READ, frozenset({200})),
    Endpoint("GET", R + "/coverage", Action.READ, frozenset({200})),
]


async def _call(world: World, endpoint: Endpoint, headers: dict[str, str]) -> httpx.Response:
    params = {"project_id": world.project_id, "run_id": world.run_id, "stage": "build"}
    params |= await endpoint.prepare(world)
    # `{name:environment}`: the route takes a name with a slash too (to refuse it as a name, 422).
    url = endpoint.path.replace(":environment}", "}").format(**params)
    body = endpoint.body
    if body is not None and body.get("deployment_id") == "set by prepare":
        body = {**body, "deployment_id": params["deployment_id"]}
    return await world.client.request(endpoint.method, url, json=body, headers=headers)


def _role_of(caller: str) -> Role | None:
    """The role the caller acts with in the project: admins act as owners; None for non-members."""
    roles = {r.value: r for r in Role} | {"admin": Role.OWNER}
    return roles.get(caller)


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.id)
async def test_each_caller_gets_what_the_permission_table_says(
    world: World, endpoint: Endpoint, caller: str
) -> None:
    response = await _call(world, endpoint, world.callers[caller].headers)
    role = _role_of(caller)
    if role is None:
        assert response.status_code == 404, response.text
        assert response.headers["content-type"] == "application/problem+json"
    elif allows(role, endpoint.action):
        assert response.status_code in endpoint.ok, response.text
    else:
        assert response.status_code == 403, response.text
        assert f"the {PERMISSIONS[endpoint.action].role.value} role" in response.json()["detail"]


@pytest.mark.parametrize("scope", list(Scope), ids=lambda s: s.value)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.id)
async def test_each_api_token_scope_gets_what_the_permission_table_says(
    world: World, endpoint: Endpoint, scope: Scope
) -> None:
    response = await _call(world, endpoint, world.tokens[scope.value])
    needed = scope_needed(endpoint.method, endpoint.action)
    if scope.rank >= needed.rank:
        assert response.status_code in endpoint.ok, response.text
    else:
        assert response.status_code == 403, response.text
        assert f"needs the {needed.value} scope" in response.json()["detail"]


def test_every_project_and_run_endpoint_is_in_the_matrix(api_app: FastAPI) -> None:
    in_app = {(method, path) for method, path, _ in scoped_routes(api_app.routes)}
    in_matrix = {(e.method, e.path) for e in ENDPOINTS}
    assert in_app - in_matrix == set(), "add these endpoints to ENDPOINTS with the action they perform"
    assert in_matrix - in_app == set(), "these endpoints are gone: remove them from ENDPOINTS"


def test_routes_that_declare_an_action_declare_the_one_the_matrix_expects(api_app: FastAPI) -> None:
    expected = {(e.method, e.path): e.action for e in ENDPOINTS}
    declared = {
        (method, path): action
        for method, path, action in scoped_routes(api_app.routes)
        if action is not None and not (action is Action.READ and method != "GET")
    }
    assert {key: expected.get(key) for key in declared} == declared


async def test_another_projects_run_stage_log_and_events_are_404_like_missing_ones(world: World) -> None:
    stranger = await _login_as_new_user(world.client, world.sessions, "stranger")
    own = await world.client.post(
        "/api/v1/projects",
        json={"name": f"own-{secrets.token_hex(4)}", "repo_url": "/x"},
        headers=stranger.headers,
    )
    assert own.status_code == 201
    missing_run = str(uuid.uuid4())
    for path in (
        "",
        "/events",
        "/stages/build/logs",
        "/commit-statuses",
        "/tests",
        "/tests/cases",
        "/coverage",
    ):
        theirs = await world.client.get(f"/api/v1/runs/{world.run_id}{path}", headers=stranger.headers)
        nothing = await world.client.get(f"/api/v1/runs/{missing_run}{path}", headers=stranger.headers)
        assert theirs.status_code == nothing.status_code == 404
        assert theirs.json()["detail"].replace(world.run_id, "ID") == nothing.json()["detail"].replace(
            missing_run, "ID"
        )
    delivery = (await _delivery(world))["delivery_id"]
    redeliver = await world.client.post(
        f"/api/v1/projects/{world.project_id}/webhooks/deliveries/{delivery}/redeliver",
        headers=stranger.headers,
    )
    assert redeliver.status_code == 404
    # Even through the stranger's own project, another project's delivery is not found.
    via_own = await world.client.post(
        f"/api/v1/projects/{own.json()['id']}/webhooks/deliveries/{delivery}/redeliver",
        headers=stranger.headers,
    )
    assert via_own.status_code == 404
