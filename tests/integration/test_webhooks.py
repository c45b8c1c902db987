"""Webhook ingestion end to end on the real services: signed deliveries from the three hosts
become runs when `on:` matches, exactly once; forged ones are refused; everything is recorded."""

from __future__ import annotations

import asyncio
import copy
import json
import secrets
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.webhooks.signatures import sign
from config.settings import WorkerSettings
from db.crypto import SecretBox
from db.models import Project, Run, WebhookDelivery
from db.repositories.projects import add_webhook_secret
from db.repositories.secrets import put_secret
from schemas.states import RunStatus
from tests.integration.conftest import TEST_SECRET_KEY, Platform, git, make_repo
from tests.integration.helpers import add_project, owner_headers, stages_of, wait_for_run
from workers.service import WorkerService

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parents[1] / "fixtures" / "webhooks"
PIPELINE = """
on:
  push: {branches: [main, "release/**"], tags: ["v*"], paths: ["src/**", ".comet.yml"]}
  pull_request: {branches: [main]}
stages:
  build: {run: "echo built $COMET_REF"}
"""


def fixture(provider: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / provider / f"{name}.json").read_text())
    return data


class Repo:
    """A real repository, its project with a webhook secret, and helpers to sign deliveries."""

    def __init__(self, path: Path, sha: str, project_id: uuid.UUID, provider_repo: str, secret: str) -> None:
        self.path, self.sha, self.project_id, self.provider_repo, self.secret = (
            path,
            sha,
            project_id,
            provider_repo,
            secret,
        )


async def _repo(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, provider: str, definition: str = PIPELINE
) -> Repo:
    path, sha = make_repo(tmp_path / "repo", {".comet.yml": definition, "src/app.py": "print('hi')\n"})
    provider_repo = f"acme/r{secrets.token_hex(4)}"
    project_id = await add_project(sessions, str(path))
    async with sessions.begin() as session:
        project = await session.get(Project, project_id)
        assert project is not None
        project.provider, project.provider_repo = provider, provider_repo
        secret = await add_webhook_secret(session, SecretBox(TEST_SECRET_KEY), project_id)
    return Repo(path, sha, project_id, provider_repo, secret)


def github_push(
    repo: Repo, *, ref: str = "refs/heads/main", files: list[str] | None = None
) -> dict[str, Any]:
    body = fixture("github", "push_branch")
    body["ref"], body["after"] = ref, repo.sha
    body["repository"]["full_name"] = repo.provider_repo
    for commit in body["commits"]:
        commit["added"], commit["modified"], commit["removed"] = [], files or ["src/app.py"], []
    body["head_commit"] = body["commits"][-1] | {"id": repo.sha}
    return body


def fork_pull_request(repo: Repo, number: int) -> dict[str, Any]:
    """A GitHub `pull_request` (opened) from a fork, targeting `repo`'s main at its head commit."""
    git(repo.path, "update-ref", f"refs/pull/{number}/head", repo.sha)
    body = fixture("github", "pull_request_opened_fork")
    body["repository"]["full_name"] = repo.provider_repo
    body["number"] = body["pull_request"]["number"] = number
    body["pull_request"]["head"]["sha"] = repo.sha
    body["pull_request"]["base"]["repo"]["full_name"] = repo.provider_repo
    return body


async def post_github(
    client: httpx.AsyncClient,
    repo: Repo,
    body: dict[str, Any] | bytes,
    *,
    event: str = "push",
    delivery: str | None = None,
    secret: str | None = None,
) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(raw, (secret or repo.secret).encode()),
    }
    return await client.post("/api/v1/webhooks/github", content=raw, headers=headers)


async def runs_of(sessions: async_sessionmaker[AsyncSession], project_id: uuid.UUID) -> list[Run]:
    async with sessions() as session:
        return list((await session.scalars(select(Run).where(Run.project_id == project_id))).all())


async def delivery_row(sessions: async_sessionmaker[AsyncSession], row_id: str) -> WebhookDelivery:
    async with sessions() as session:
        row = await session.get(WebhookDelivery, uuid.UUID(row_id))
        assert row is not None
        return row


async def _wait_for_delivery_run(
    sessions: async_sessionmaker[AsyncSession], row_id: str, timeout_s: float = 60
) -> WebhookDelivery:
    async with asyncio.timeout(timeout_s):
        while True:
            row = await delivery_row(sessions, row_id)
            if row.run_id is not None or row.outcome == "ignored":
                return row
            await asyncio.sleep(0.05)


async def test_a_signed_github_push_becomes_exactly_one_run_and_a_redelivery_is_a_duplicate(
    platform: Platform,
    api_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    repo = await _repo(sessions, tmp_path, "github")
    delivery = str(uuid.uuid4())
    body = github_push(repo)

    first = await post_github(api_client, repo, body, delivery=delivery)
    again = await post_github(api_client, repo, body, delivery=delivery)

    assert first.status_code == 202, first.text
    assert first.json()["outcome"] == "accepted"
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    row = await _wait_for_delivery_run(sessions, first.json()["id"])
    assert row.run_id is not None
    run = await wait_for_run(sessions, row.run_id)
    assert run.status == "succeeded", run.failure_reason
    assert run.sha == repo.sha
    assert run.trigger["kind"] == "webhook"
    assert run.trigger["delivery_id"] == delivery
    assert len(await runs_of(sessions, repo.project_id)) == 1


async def test_a_push_outside_the_filters_is_recorded_as_ignored_with_the_reason(
    platform: Platform,
    api_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    repo = await _repo(sessions, tmp_path, "github")
    git(repo.path, "branch", "feature/x")

    response = await post_github(api_client, repo, github_push(repo, ref="refs/heads/feature/x"))

    assert response.status_code == 202
    row = await _wait_for_delivery_run(sessions, response.json()["id"])
    assert row.outcome == "ignored"
    assert "feature/x" in (row.reason or "")
    assert await runs_of(sessions, repo.project_id) == []


async def test_a_truncated_payload_falls_back_to_a_git_diff_for_paths(
    platform: Platform,
    api_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    repo = await _repo(sessions, tmp_path, "github")
    (repo.path / "docs.md").write_text("only docs\n")
    git(repo.path, "add", "-A")
    git(repo.path, "commit", "-q", "-m", "docs only")
    docs_sha = git(repo.path, "rev-parse", "HEAD")
    body = github_push(repo)
    body["before"], body["after"] = repo.sha, docs_sha
    body["commits"] = [copy.deepcopy(body["commits"][0]) for _ in range(20)]  # 20 listed: truncated

    response = await post_github(api_client, repo, body)

    row = await _wait_for_delivery_run(sessions, response.json()["id"])
    assert row.outcome == "ignored"
    assert "paths" in (row.reason or "")


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda h, b: h.pop("X-Hub-Signature-256"), "missing"),
        (lambda h, b: h.__setitem__("X-Hub-Signature-256", "sha256=" + "0" * 64), "does not match"),
        (lambda h, b: h.__setitem__("X-Hub-Signature-256", h["X-Hub-Signature-256"].upper()), ""),
    ],
    ids=["missing", "wrong", "upper-case"],
)
async def test_a_forged_delivery_is_refused_and_nothing_is_recorded(
    platform: Platform,
    api_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
    mutate: Any,
    reason: str,
) -> None:
    repo = await _repo(sessions, tmp_path, "github")
    raw = json.dumps(github_push(repo)).encode()
    delivery = str(uuid.uuid4())
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign(raw, repo.secret.encode()),
    }
    mutate(headers, raw)

    response = await api_client.post("/api/v1/webhooks/github", content=raw, headers=headers)

    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert reason in response.json()["detail"]
    async with sessions() as session:
        count = await session.scalar(
            select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.delivery_id == delivery)
        )
    assert count == 0


async def test_valid_signature_but_malformed_json_is_a_400_recorded_as_rejected(
    platform: Platform,
    api_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    repo = await _repo(sessions, tmp_path, "github")
    raw = json.dumps(github_push(repo)).encode()[:-5]  # cut off: no longer JSON, still names the repo

    response = await post_github(api_client, repo, raw)

    assert response.status_code in (400, 404)
    if response.status_code == 400:
        row = await delivery_row(sessions, response.json()["delivery"])
        assert row.outcome == "rejected"
        assert "JSON" in (row.reason or "")


async def test_a_ping_is_acknowledged_and_recorded_as_ignored(
    platform: Platform,
    api_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    repo = await _repo(sessions, tmp_path, "github")
    body = fixture("github", "ping")
    body["repository"]["full_name"] = repo.provider_repo

    response = await post_github(api_client, repo, body, event="ping")

    assert response.status_code == 202
    assert response.json()["outcome"] == "ignored"


async def test_a_fork_pull_request_runs_on_the_untrusted_pool(
    platform: Platform,
    api_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    repo = await _repo(sessions, tmp_path, "github")
    body = fork_pull_request(repo, 7)

    response = await post_github(api_client, repo, body, event="pull_request")

    assert response.status_code == 202, response.text
    row = await _wait_for_delivery_run(sessions, response.json()["id"])
    assert row.run_id is not None, row.reason
    run = await wait_for_run(
        sessions,
        row.run_id,
        until=frozenset({RunStatus.QUEUED}),
    )
    assert run.trigger["fork"] is True
    assert {s.pool for s in (await stages_of(sessions, run.id)).values()} == {"untrusted"}


async def test_a_gitlab_push_with_the_right_token_starts_a_run(
    platform: Platform,
    api_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    repo = await _repo(sessions, tmp_path, "gitlab")
    body = fixture("gitlab", "push")
    body["ref"], body["after"], body["checkout_sha"] = "refs/heads/main", repo.sha, repo.sha
    body["project"]["path_with_namespace"] = repo.provider_repo
    if "repository" in body:
        body["repository"]["path_with_namespace"] = repo.provider_repo
    for commit in body.get("commits", []):
        commit["modified"] = ["src/app.py"]
    headers = {
        "Content-Type": "application/json",
        "X-Gitlab-Event": "Push Hook",
        "X-Gitlab-Event-UUID": str(uuid.uuid4()),
        "X-Gitlab-Token": repo.secret,
    }

    wrong = await api_client.post(
        "/api/v1/webhooks/gitlab", json=body, headers=headers | {"X-Gitlab-Token": "nope"}
    )
    response = await api_client.post("/api/v1/webhooks/gitlab", json=body, headers=headers)

    assert wrong.status_code == 401
    assert response.status_code == 202, response.text
    row = await _wait_for_delivery_run(sessions, response.json()["id"])
    assert row.run_id is not None, row.reason
    assert (await wait_for_run(sessions, row.run_id)).status == "succeeded"
    async with sessions() as session:
        stored = await session.get(WebhookDelivery, row.id)
        assert stored is not None
        assert "x-gitlab-token" not in stored.headers, "the GitLab token was stored"


async def test_redeliver_is_idempotent_unless_forced(
    platform: Platform,
    api_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    repo = await _repo(sessions, tmp_path, "github")
    response = await post_github(api_client, repo, github_push(repo))
    row = await _wait_for_delivery_run(sessions, response.json()["id"])
    owner = await owner_headers(api_client, sessions, repo.project_id)
    url = f"/api/v1/projects/{repo.project_id}/webhooks/deliveries"

    listed = await api_client.get(url, headers=owner)
    plain = await api_client.post(f"{url}/{row.id}/redeliver", headers=owner)
    forced = await api_client.post(f"{url}/{row.id}/redeliver?force=true", headers=owner)

    assert listed.status_code == 200
    assert listed.json()["data"][0]["run_id"] == str(row.run_id)
    assert plain.json()["status"] == "already_delivered"
    assert forced.json()["status"] == "redelivering"
    async with asyncio.timeout(60):
        while len(await runs_of(sessions, repo.project_id)) < 2:
            await asyncio.sleep(0.05)


async def test_a_fork_pull_request_gets_no_project_secrets(
    platform: Platform,
    api_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    common_env: dict[str, Any],
    tmp_path: Path,
) -> None:
    definition = """
on: {pull_request: {branches: [main]}}
stages:
  check:
    run: |
      test -z "${DEPLOY_TOKEN:-}"
      echo "no secrets here"
"""
    repo = await _repo(sessions, tmp_path, "github", definition)
    async with sessions.begin() as session:
        await put_secret(
            session, SecretBox(TEST_SECRET_KEY), repo.project_id, "DEPLOY_TOKEN", "do-not-leak-me"
        )
    untrusted = WorkerService(
        WorkerSettings(
            **common_env,
            pool="untrusted",
            workspace_dir=str(tmp_path / "ws"),
            git_cache_dir=str(tmp_path / "git"),
            secret_key=TEST_SECRET_KEY,
        ),
        worker_id="untrusted-worker",
    )
    stop = asyncio.Event()
    task = asyncio.create_task(untrusted.run(stop))
    try:
        body = fork_pull_request(repo, 9)

        response = await post_github(api_client, repo, body, event="pull_request")
        row = await _wait_for_delivery_run(sessions, response.json()["id"])
        assert row.run_id is not None, row.reason
        run = await wait_for_run(sessions, row.run_id)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)

    assert run.status == "succeeded", run.failure_reason
