"""Environments, deployments, approvals and rollback end to end (decision 0027), on the real Kafka
and Postgres with a real orchestrator and workers: a production environment needing two approvals
(self-approval refused, a rejection failing the stage, two approvals deploying it), a branch rule
refusing a feature branch, two runs deploying to one environment one after the other, the wait
timer, the approval deadline, and a rollback deploying the earlier commit again."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.auth.passwords import hash_password
from db.models import Membership
from db.repositories import users
from events.topics import Topics
from orchestrator.deployment_timer import DeploymentTimer
from tests.integration.conftest import Platform, git, make_repo
from tests.integration.helpers import add_project, attempts_of, log_of, stages_of, wait_for_run
from tests.integration.processes import process_env
from tests.integration.test_replay_run import _audit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

API = "/api/v1"
DEFINITION = """
stages:
  build: {run: echo built, checkout: false}
  deploy:
    needs: [build]
    environment: {name: production, url: "https://example.com"}
    run: echo "deploying $COMET_SHA"
"""


@dataclass
class Person:
    user_id: str
    headers: dict[str, str]


async def _member(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], project_id: uuid.UUID, role: str
) -> Person:
    email, password = f"{role}-{secrets.token_hex(4)}@example.com", f"long password {secrets.token_hex(4)}"
    async with sessions.begin() as session:
        user = await users.create_user(session, email=email, password_hash=hash_password(password))
        session.add(Membership(project_id=project_id, user_id=user.id, role=role))
        user_id = str(user.id)
    login = await client.post(f"{API}/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    return Person(user_id, {"Authorization": f"Bearer {login.json()['access_token']}"})


@dataclass
class Team:
    project_id: uuid.UUID
    repo: Path
    owner: Person
    alice: Person  # maintainer
    bob: Person  # maintainer


async def _team(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], tmp_path: Path, definition: str
) -> Team:
    repo, _ = make_repo(tmp_path / "repo", {".comet.yml": definition})
    project_id = await add_project(sessions, str(repo))
    owner = await _member(client, sessions, project_id, "owner")
    alice = await _member(client, sessions, project_id, "maintainer")
    bob = await _member(client, sessions, project_id, "maintainer")
    return Team(project_id, repo, owner, alice, bob)


async def _put_environment(client: httpx.AsyncClient, team: Team, name: str, **rules: Any) -> dict[str, Any]:
    response = await client.put(
        f"{API}/projects/{team.project_id}/environments/{name}", json=rules, headers=team.owner.headers
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _trigger(client: httpx.AsyncClient, team: Team, who: Person, ref: str = "main") -> uuid.UUID:
    response = await client.post(
        f"{API}/projects/{team.project_id}/runs", json={"ref": ref}, headers=who.headers
    )
    assert response.status_code == 202, response.text
    return uuid.UUID(response.json()["run_id"])


async def _deployment_of(
    client: httpx.AsyncClient,
    team: Team,
    run_id: uuid.UUID,
    *,
    until: str | None = None,
    timeout_s: float = 60,
) -> dict[str, Any]:
    """The run's deployment as the API shows it, once it exists (and has `until` in its reason or status)."""
    async with asyncio.timeout(timeout_s):
        while True:
            response = await client.get(
                f"{API}/projects/{team.project_id}/deployments", headers=team.owner.headers
            )
            assert response.status_code == 200, response.text
            found = [d for d in response.json()["data"] if d["run_id"] == str(run_id)]
            if found and (
                until is None or until in (found[0]["reason"] or "") or until == found[0]["status"]
            ):
                return dict(found[0])
            await asyncio.sleep(0.1)


async def _review(
    client: httpx.AsyncClient, deployment_id: str, who: Person, verb: str = "approve", comment: str = ""
) -> httpx.Response:
    return await client.post(
        f"{API}/deployments/{deployment_id}/{verb}", json={"comment": comment}, headers=who.headers
    )


async def test_production_needing_two_approvals_refuses_self_approval_and_deploys_after_two(
    platform: Platform,
    api_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    common_env: dict[str, Any],
    tmp_path: Path,
) -> None:
    team = await _team(api_client, sessions, tmp_path, DEFINITION)
    await _put_environment(api_client, team, "production", required_approvals=2, allow_self_approval=False)
    run_id = await _trigger(api_client, team, team.owner)
    waiting = await _deployment_of(api_client, team, run_id, until="waiting for 2 more approvals")
    assert (await stages_of(sessions, run_id))["deploy"].status == "waiting_approval"

    own = await _review(api_client, waiting["id"], team.owner)
    first = await _review(api_client, waiting["id"], team.alice, comment="looks good")
    twice = await _review(api_client, waiting["id"], team.alice)
    own_via_stage = await api_client.post(
        f"{API}/runs/{run_id}/stages/deploy/approve", headers=team.owner.headers
    )
    # The stage-approval route is the same mechanism: it approves the stage's deployment.
    second = await api_client.post(f"{API}/runs/{run_id}/stages/deploy/approve", headers=team.bob.headers)
    run = await wait_for_run(sessions, run_id)

    assert own.status_code == 403, own.text
    assert "must be approved by someone else" in own.json()["detail"]
    assert first.status_code == 202, first.text
    assert twice.status_code == 409, twice.text
    assert "distinct people" in twice.json()["detail"]
    assert own_via_stage.status_code == 403, own_via_stage.text
    assert second.status_code == 202, second.text
    assert run.status == "succeeded", run.failure_reason
    deployed = (await api_client.get(f"{API}/deployments/{waiting['id']}", headers=team.owner.headers)).json()
    assert deployed["status"] == "succeeded"
    assert deployed["url"] == "https://example.com"
    assert deployed["triggered_by"] == team.owner.user_id
    assert [(a["user_id"], a["decision"], a["comment"]) for a in deployed["approvals"]] == [
        (team.alice.user_id, "approved", "looks good"),
        (team.bob.user_id, "approved", ""),
    ]
    assert deployed["started_at"] is not None
    assert deployed["finished_at"] is not None
    finished = await _review(api_client, waiting["id"], team.bob)
    assert finished.status_code == 409
    assert "already finished (succeeded)" in finished.json()["detail"]
    history = (
        await api_client.get(f"{API}/runs/{run_id}/events?limit=500", headers=team.owner.headers)
    ).json()
    changes = [e["payload"]["status"] for e in history["data"] if e["type"] == "deployment.status_changed"]
    assert changes == ["waiting", "queued", "in_progress", "succeeded"]
    assert [e["type"] for e in history["data"]].count("deployment.reviewed") == 2
    # `comet replay run`: today's decide() takes every decision of this history as recorded.
    code, audit = await asyncio.to_thread(_audit, process_env(common_env), run_id)
    assert (code, audit["deterministic"]) == (0, True), audit
    inputs = [step["type"] for step in audit["steps"] if step["kind"] == "input"]
    assert inputs.count("deployment.reviewed") == 2
    assert "deployment.environment_granted" in inputs


async def test_a_rejection_fails_the_deploying_stage_with_the_reason(
    platform: Platform,
    api_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    team = await _team(api_client, sessions, tmp_path, DEFINITION)
    await _put_environment(api_client, team, "production", required_approvals=2)
    run_id = await _trigger(api_client, team, team.owner)
    waiting = await _deployment_of(api_client, team, run_id, until="waiting for 2 more approvals")

    rejected = await _review(api_client, waiting["id"], team.alice, "reject", comment="freeze week")
    run = await wait_for_run(sessions, run_id)

    assert rejected.status_code == 202, rejected.text
    assert run.status == "failed"
    stage = (await stages_of(sessions, run_id))["deploy"]
    assert stage.status == "failed"
    assert stage.failure_reason is not None
    assert stage.failure_reason.endswith(": freeze week")
    assert "rejected by alice" not in stage.failure_reason  # the reviewer's email is named
    deployment = await _deployment_of(api_client, team, run_id, until="rejected")
    assert deployment["reason"] == stage.failure_reason
    late = await _review(api_client, waiting["id"], team.bob)
    assert late.status_code == 409
    assert "already finished (rejected)" in late.json()["detail"]


async def test_a_branch_rule_refuses_a_feature_branch_with_the_reason(
    platform: Platform,
    api_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    team = await _team(api_client, sessions, tmp_path, DEFINITION)
    await _put_environment(api_client, team, "production", branches=["main", "release/*"])
    git(team.repo, "checkout", "-q", "-b", "feature/x")
    git(team.repo, "commit", "-q", "--allow-empty", "-m", "feature work")
    git(team.repo, "checkout", "-q", "main")

    run = await wait_for_run(sessions, await _trigger(api_client, team, team.owner, "feature/x"))

    assert run.status == "failed"
    reason = "branch feature/x may not deploy to production: only main, release/* may"
    assert (await stages_of(sessions, run.id))["deploy"].failure_reason == reason
    deployment = await _deployment_of(api_client, team, run.id)
    assert (deployment["status"], deployment["reason"]) == ("rejected", reason)
    assert run.failure_reason == f"stage deploy failed: {reason}"


async def test_two_runs_deploying_to_one_environment_deploy_one_after_the_other(
    platform: Platform,
    api_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    slow = DEFINITION.replace('run: echo "deploying $COMET_SHA"', "run: sleep 2")
    team = await _team(api_client, sessions, tmp_path, slow)
    first = await _trigger(api_client, team, team.owner)
    second = await _trigger(api_client, team, team.owner)

    # While one deploys, the other is visible in line with its reason.
    async with asyncio.timeout(60):
        while True:
            env = (
                await api_client.get(
                    f"{API}/projects/{team.project_id}/environments/production", headers=team.owner.headers
                )
            ).json()
            if env.get("current") and env["current"]["status"] == "in_progress" and env["waiting"]:
                break
            await asyncio.sleep(0.05)
    assert env["waiting"][0]["reason"] == "waiting for environment production to be free"
    runs = [await wait_for_run(sessions, r) for r in (first, second)]

    assert [r.status for r in runs] == ["succeeded", "succeeded"]
    spans = []
    for run_id in (first, second):
        deploy = (await stages_of(sessions, run_id))["deploy"]
        spans += [
            (a.started_at, a.finished_at)
            for a in await attempts_of(sessions, run_id)
            if a.stage_id == deploy.id
        ]
    assert len(spans) == 2
    starts = [start for start, _ in spans if start is not None]
    ends = [end for _, end in spans if end is not None]
    assert len(starts) == len(ends) == 2
    assert max(starts) >= min(ends), "two deployments ran in production at once"


async def test_the_wait_timer_delays_a_deployment(
    platform: Platform,
    api_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    team = await _team(api_client, sessions, tmp_path, DEFINITION)
    await _put_environment(api_client, team, "production", wait_timer="3s")
    run_id = await _trigger(api_client, team, team.owner)

    waiting = await _deployment_of(api_client, team, run_id, until="wait timer")
    run = await wait_for_run(sessions, run_id)

    assert run.status == "succeeded", run.failure_reason
    deployed = (await api_client.get(f"{API}/deployments/{waiting['id']}", headers=team.owner.headers)).json()
    created, started = (
        datetime.fromisoformat(deployed["created_at"]),
        datetime.fromisoformat(deployed["started_at"]),
    )
    assert started - created >= timedelta(seconds=3)


async def test_a_deployment_not_approved_in_time_fails_with_the_reason(
    platform: Platform,
    api_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    namespace: str,
    tmp_path: Path,
) -> None:
    team = await _team(api_client, sessions, tmp_path, DEFINITION)
    await _put_environment(api_client, team, "production", required_approvals=1)
    run_id = await _trigger(api_client, team, team.owner)
    await _deployment_of(api_client, team, run_id, until="waiting for 1 more approval")

    # A timer of the orchestrator's kind, a day later (decide() takes the time from the event).
    timer = DeploymentTimer(sessions, Topics(namespace), interval_s=1)
    fired = await timer.fire_once(now=datetime.now(UTC) + timedelta(hours=24, seconds=1))
    run = await wait_for_run(sessions, run_id)

    assert fired >= 1
    assert run.status == "failed"
    reason = "no approval within 24 h: 0 of 1 required approvals were given"
    assert (await stages_of(sessions, run_id))["deploy"].failure_reason == reason
    assert (await _deployment_of(api_client, team, run_id))["status"] == "failed"


async def test_a_rollback_deploys_the_earlier_sha_again_and_shows_in_the_history(
    platform: Platform,
    api_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    team = await _team(api_client, sessions, tmp_path, DEFINITION)
    first_sha = git(team.repo, "rev-parse", "HEAD")
    first = await wait_for_run(sessions, await _trigger(api_client, team, team.owner))
    (team.repo / "CHANGES").write_text("v2\n")
    git(team.repo, "add", "CHANGES")
    git(team.repo, "commit", "-q", "-m", "v2")
    second = await wait_for_run(sessions, await _trigger(api_client, team, team.owner))
    assert (first.status, second.status) == ("succeeded", "succeeded")
    good = await _deployment_of(api_client, team, first.id)
    assert good["sha"] == first_sha != second.sha

    url = f"{API}/projects/{team.project_id}/environments/production/rollback"
    response = await api_client.post(url, json={"deployment_id": good["id"]}, headers=team.alice.headers)
    assert response.status_code == 202, response.text
    rollback = await wait_for_run(sessions, uuid.UUID(response.json()["run_id"]))

    assert rollback.status == "succeeded", rollback.failure_reason
    assert rollback.trigger["kind"] == "rollback"
    assert list(await stages_of(sessions, rollback.id)) == ["deploy"]  # not the whole pipeline
    attempt = (await attempts_of(sessions, rollback.id))[0]
    assert f"deploying {first_sha}" in await log_of(sessions, attempt.id)
    again = await _deployment_of(api_client, team, rollback.id)
    assert (again["sha"], again["rollback_of"], again["status"]) == (first_sha, good["id"], "succeeded")
    history = (
        await api_client.get(
            f"{API}/projects/{team.project_id}/deployments?environment=production", headers=team.owner.headers
        )
    ).json()["data"]
    assert [d["run_id"] for d in history] == [str(rollback.id), str(second.id), str(first.id)]
    env = (
        await api_client.get(
            f"{API}/projects/{team.project_id}/environments/production", headers=team.owner.headers
        )
    ).json()
    assert env["current"]["id"] == again["id"]


async def test_bad_input_is_a_precise_problem_and_changes_nothing(
    platform: Platform,
    api_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    team = await _team(api_client, sessions, tmp_path, DEFINITION.replace("echo built", "exit 1"))
    other = await _team(api_client, sessions, tmp_path / "other", DEFINITION)
    failed_run = await wait_for_run(sessions, await _trigger(api_client, team, team.owner))
    assert failed_run.status == "failed"
    theirs = await _deployment_of(
        api_client, other, await _trigger(api_client, other, other.owner), until="succeeded"
    )
    base = f"{API}/projects/{team.project_id}/environments"

    bad_name = await api_client.put(f"{base}/prod%2F..%2Fx", json={}, headers=team.owner.headers)
    spaced = await api_client.put(f"{base}/prod%20x", json={}, headers=team.owner.headers)
    too_many = await api_client.put(
        f"{base}/production", json={"required_approvals": 6}, headers=team.owner.headers
    )
    foreign = await api_client.post(
        f"{base}/production/rollback", json={"deployment_id": theirs["id"]}, headers=team.owner.headers
    )
    unknown = await api_client.post(
        f"{base}/production/rollback", json={"deployment_id": str(uuid.uuid4())}, headers=team.owner.headers
    )
    by_developer = await api_client.put(
        f"{base}/production",
        json={"required_approvals": 1},
        headers=(await _member(api_client, sessions, team.project_id, "developer")).headers,
    )

    assert bad_name.status_code == 422, bad_name.text
    assert bad_name.json()["errors"][0]["field"] == "path.name", bad_name.text
    assert spaced.status_code == 422
    assert spaced.headers["content-type"] == "application/problem+json"
    assert too_many.status_code == 422
    assert foreign.status_code == 404
    assert unknown.status_code == 404
    assert by_developer.status_code == 403
    listed = await api_client.get(f"{base}", headers=team.owner.headers)
    assert listed.json()["data"] == []  # nothing was configured, nothing deployed

    # A failed deployment cannot be rolled back to.
    other_failing = await _team(
        api_client, sessions, tmp_path / "third", DEFINITION.replace('echo "deploying $COMET_SHA"', "exit 3")
    )
    broken = await wait_for_run(sessions, await _trigger(api_client, other_failing, other_failing.owner))
    assert broken.status == "failed"
    failed = await _deployment_of(api_client, other_failing, broken.id, until="failed")
    refused = await api_client.post(
        f"{API}/projects/{other_failing.project_id}/environments/production/rollback",
        json={"deployment_id": failed["id"]},
        headers=other_failing.owner.headers,
    )
    assert refused.status_code == 409
    assert "only a successful deployment can be rolled back to" in refused.json()["detail"]
