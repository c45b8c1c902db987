"""Hostile input sweep on the real services and a real worker: malicious refs, branch names, PR
titles, commit messages and sender names (shell metacharacters, `$(…)`, backticks, newlines,
`../`, option-looking values, Unicode look-alikes) arrive through signed GitHub, GitLab and
Bitbucket deliveries and REST triggers.

Each is either refused with a precise 4xx (a problem naming the ref) or stored and used verbatim:
its run has exactly that ref, checks it out and shows it in its log. Every payload variant would
create a canary file (`touch /tmp/comet-canary-<id>-…`) if any part of Comet handed it to a shell or
used it as a path; none exists at the end. The project's secret, printed by the stage as it is,
split across log chunks, JSON-escaped, URL-encoded and base64-encoded, is masked in every log.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import glob
import json
import re
import secrets
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.webhooks.signatures import sign
from db.crypto import SecretBox
from db.models import Project, Run, StageAttempt, WebhookDelivery
from db.repositories.projects import add_webhook_secret
from db.repositories.secrets import put_secret
from schemas.states import RUN_TERMINAL
from tests.integration.conftest import TEST_SECRET_KEY, Platform, git, make_repo
from tests.integration.helpers import add_project, log_of, owner_headers

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parents[1] / "fixtures" / "webhooks"
TOKEN = "s3cr3t+T0ken/with=Sym&bols@42"  # '+', '/', '=', '&', '@': its encodings all differ from it
PIPELINE = """
on:
  push: {branches: ["**"]}
  pull_request: {}
stages:
  show:
    run: |
      printf 'ref=[%s]\\n' "$COMET_REF"
      python3 - <<'PY'
      import base64, json, os, sys, time, urllib.parse
      s = os.environ["API_TOKEN"]
      print("plain", s)
      print(json.dumps({"token": s, "note": "a \\"quoted\\" token"}))
      print("url", urllib.parse.quote(s, safe=""), urllib.parse.quote_plus(s))
      print("b64", base64.b64encode(s.encode()).decode())
      print("basic", base64.b64encode(b"user:" + s.encode()).decode())
      print("wrapped", base64.b64encode(b"xy" + s.encode() + b"tail").decode())
      sys.stdout.write("split " + s[:7]); sys.stdout.flush(); time.sleep(0.4)
      print(s[7:])
      PY
"""


def _injections(canary: str) -> list[str]:
    """Ways a value could run a command if it reached a shell: each creates `canary`-N."""
    touch = "touch${IFS}" + canary
    return [
        f"$({touch}-1)",
        f"`{touch}-2`",
        f";{touch}-3",
        f"|{touch}-4",
        f"&&{touch}-5",
        f"||{touch}-6",
        f">{canary}-7",
        f"$({touch}-8)#",
        f"'$({touch}-9)'",
        f'"$({touch}-10)"',
        f"{{a,b}}$({touch}-11)",
        f"!!$({touch}-12)",
        f"$(<{canary}-13)",
        f"a&{touch}-14&",
    ]


def _refused_refs(canary: str) -> list[str]:
    """Refs no validator may let through: spaces, newlines, `..`, option-looking, git's own
    forbidden characters."""
    return [
        f"refs/heads/a $(touch {canary}-20)",
        f"refs/heads/a\ntouch {canary}-21",
        f"refs/heads/../../../..{canary}-22",
        f"refs/heads/x/../../{canary}-23",
        f"--upload-pack=touch {canary}-24",
        f"-oProxyCommand=touch${{IFS}}{canary}-25",
        f"refs/heads/a~1$(touch${{IFS}}{canary}-26)",
        f"refs/heads/a^{{}}$(touch${{IFS}}{canary}-27)",
        f"refs/heads/a:b$(touch${{IFS}}{canary}-28)",
        f"refs/heads/a\\b$(touch${{IFS}}{canary}-29)",
        f"refs/heads/a\x00$(touch${{IFS}}{canary}-30)",
        f"refs/heads/a\tb$(touch${{IFS}}{canary}-31)",
        f"refs/heads/a@{{1}}$(touch${{IFS}}{canary}-32)",
        f"refs/heads/.hidden$(touch${{IFS}}{canary}-33)",
        f"refs/heads/x.lock$(touch${{IFS}}{canary}-34).lock",
        "refs/heads/",
    ]


LOOK_ALIKES = ["refs/heads/mаin", "refs/heads/ｍａｉｎ", "refs/heads/main\u200b", "refs/heads/rel\u2215v1"]


@dataclass
class _Case:
    via: str  # github | gitlab | bitbucket | rest
    ref: str
    status: int = 0
    run_id: uuid.UUID | None = None
    detail: str = ""


@dataclass
class _Project:
    id: uuid.UUID
    repo: str
    secret: str


async def _project(sessions: async_sessionmaker[AsyncSession], path: Path, provider: str) -> _Project:
    project_id = await add_project(sessions, str(path))
    repo = f"acme/h{secrets.token_hex(4)}"
    async with sessions.begin() as session:
        project = await session.get(Project, project_id)
        assert project is not None
        project.provider, project.provider_repo = provider, repo
        secret = await add_webhook_secret(session, SecretBox(TEST_SECRET_KEY), project_id)
        await put_secret(session, SecretBox(TEST_SECRET_KEY), project_id, "API_TOKEN", TOKEN)
    return _Project(project_id, repo, secret)


def _fixture(provider: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / provider / f"{name}.json").read_text())
    return data


def _github_push(p: _Project, sha: str, ref: str, text: str) -> dict[str, Any]:
    body = _fixture("github", "push_branch")
    body["ref"], body["after"], body["before"], body["created"] = ref, sha, "0" * 40, True
    body["repository"]["full_name"] = p.repo
    for commit in body["commits"]:
        commit["message"] = text
        commit["author"]["name"] = text
    body["head_commit"] = body["commits"][-1] | {"id": sha, "message": text}
    body["pusher"] = {"name": text, "email": "x@example.com"}
    return body


def _gitlab_push(p: _Project, sha: str, ref: str, text: str) -> dict[str, Any]:
    body = _fixture("gitlab", "push")
    body["ref"], body["after"], body["checkout_sha"] = ref, sha, sha
    body["before"] = "0" * 40
    body["project"]["path_with_namespace"] = p.repo
    body["user_name"] = text
    for commit in body["commits"]:
        commit["message"] = commit["title"] = text
    return body


def _bitbucket_push(p: _Project, sha: str, branch: str, text: str) -> dict[str, Any]:
    body = _fixture("bitbucket", "push_two_changes")
    change = copy.deepcopy(body["push"]["changes"][0])
    change["old"] = None
    change["new"]["name"], change["new"]["target"]["hash"] = branch, sha
    change["new"]["target"]["message"] = text
    body["push"]["changes"] = [change]
    body["repository"]["full_name"] = p.repo
    body["actor"]["display_name"] = text
    return body


def _github_pull_request(p: _Project, sha: str, number: int, branch: str, title: str) -> dict[str, Any]:
    body = _fixture("github", "pull_request_synchronize")
    body["repository"]["full_name"] = p.repo
    body["number"] = body["pull_request"]["number"] = number
    body["pull_request"]["title"] = title
    body["pull_request"]["head"]["sha"], body["pull_request"]["head"]["ref"] = sha, branch
    body["pull_request"]["head"]["repo"]["full_name"] = p.repo
    body["pull_request"]["base"]["repo"]["full_name"] = p.repo
    body.pop("before", None)
    return body


async def _deliver(
    client: httpx.AsyncClient, provider: str, p: _Project, body: dict[str, Any], event: str
) -> httpx.Response:
    raw = json.dumps(body).encode()
    delivery = str(uuid.uuid4())
    headers = {"Content-Type": "application/json"}
    if provider == "github":
        headers |= {
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": sign(raw, p.secret.encode()),
        }
    elif provider == "gitlab":
        headers |= {"X-Gitlab-Event": event, "X-Gitlab-Event-UUID": delivery, "X-Gitlab-Token": p.secret}
    else:
        headers |= {
            "X-Event-Key": event,
            "X-Request-UUID": delivery,
            "X-Hub-Signature": sign(raw, p.secret.encode()),
        }
    return await client.post(f"/api/v1/webhooks/{provider}", content=raw, headers=headers)


async def _delivery_run(sessions: async_sessionmaker[AsyncSession], row_id: str) -> uuid.UUID:
    async with asyncio.timeout(60):
        while True:
            async with sessions() as session:
                row = await session.get(WebhookDelivery, uuid.UUID(row_id))
                assert row is not None
                if row.run_id is not None:
                    return row.run_id
                assert row.outcome != "ignored", row.reason
            await asyncio.sleep(0.1)


def _leaks(text: str) -> list[str]:
    """Readable forms of TOKEN in `text`, however encoded."""
    found = [
        f for f in (TOKEN, json.dumps(TOKEN)[1:-1], quote(TOKEN, safe=""), quote_plus(TOKEN)) if f in text
    ]
    for run in re.findall(r"[A-Za-z0-9+/\-_]{4,}", text):
        for skip in range(4):
            chunk = run[skip:][: (len(run) - skip) // 4 * 4]
            try:
                if TOKEN.encode() in base64.b64decode(chunk, validate=True):
                    found.append(f"base64 {run}")
            except (binascii.Error, ValueError):
                continue
    return found


@pytest.mark.timeout(240)
async def test_hostile_refs_titles_and_messages_are_refused_precisely_or_used_verbatim_and_run_nothing(
    platform: Platform,
    api_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    tag = secrets.token_hex(4)
    canary = f"/tmp/comet-canary-{tag}"
    path, sha = make_repo(tmp_path / "repo", {".comet.yml": PIPELINE})
    injections = _injections(canary)
    accepted_refs = [f"refs/heads/i{n}-{value}" for n, value in enumerate(injections)] + LOOK_ALIKES
    # Valid to git, but a branch that reads as an option: refusing it or running it are both fine.
    either = [
        f"refs/heads/--upload-pack=touch${{IFS}}{canary}-35",
        f"refs/tags/-c${{IFS}}core.sshCommand={canary}-36",
    ]
    for ref in accepted_refs + either:  # the branches exist, so a run of each can check it out
        subprocess.run(["git", "-C", str(path), "update-ref", ref, sha], check=True, capture_output=True)
    github, gitlab, bitbucket, rest = [
        await _project(sessions, path, provider) for provider in ("github", "gitlab", "bitbucket", "local")
    ]
    headers = await owner_headers(api_client, sessions, rest.id)
    refused = _refused_refs(canary)
    cases: list[_Case] = []
    texts = [*injections, f"line one\n$(touch${{IFS}}{canary}-40)\n", "\u202e" + injections[0], "x" * 70_000]

    async def send(case: _Case, response: httpx.Response) -> None:
        case.status = response.status_code
        payload = response.json()
        case.detail = str(payload.get("detail", ""))
        if response.status_code == 202:
            case.run_id = (
                uuid.UUID(payload["run_id"])
                if case.via == "rest"
                else await _delivery_run(sessions, payload["id"])
            )
        cases.append(case)

    candidates = accepted_refs + refused + either
    for n, ref in enumerate(candidates):
        text = texts[n % len(texts)]
        via = ("github", "gitlab", "bitbucket", "rest")[n % 4]
        case = _Case(via, ref)
        if via == "github":
            await send(
                case, await _deliver(api_client, via, github, _github_push(github, sha, ref, text), "push")
            )
        elif via == "gitlab":
            await send(
                case,
                await _deliver(api_client, via, gitlab, _gitlab_push(gitlab, sha, ref, text), "Push Hook"),
            )
        elif via == "bitbucket":
            branch = ref.removeprefix("refs/heads/")
            body = _bitbucket_push(bitbucket, sha, branch, text)
            await send(case, await _deliver(api_client, via, bitbucket, body, "repo:push"))
        else:
            response = await api_client.post(
                f"/api/v1/projects/{rest.id}/runs", json={"ref": ref}, headers=headers
            )
            await send(case, response)
    # Pull requests: hostile titles and head branches, through GitHub.
    for number, title in enumerate(texts[:4], start=900):
        git(path, "update-ref", f"refs/pull/{number}/head", sha)
        branch = accepted_refs[number - 900].removeprefix("refs/heads/")
        body = _github_pull_request(github, sha, number, branch, title)
        await send(
            _Case("github-pr", f"refs/pull/{number}/head"),
            await _deliver(api_client, "github", github, body, "pull_request"),
        )

    assert len(set(candidates + texts)) >= 50
    for case in cases:
        if case.ref in refused:
            assert 400 <= case.status < 500, f"{case.via} {case.ref!r}: {case.status}"
        if case.ref in accepted_refs:
            assert case.status == 202, f"{case.via} {case.ref!r}: {case.status} {case.detail}"
        assert case.status in (202, 400, 422), f"{case.via} {case.ref!r}: {case.status} {case.detail}"
        if case.status != 202:
            assert "ref" in case.detail.lower() or "name" in case.detail.lower(), case.detail
    runs = [c for c in cases if c.run_id is not None]

    async def finished(run_id: uuid.UUID) -> Run:
        async with asyncio.timeout(150):
            while True:
                async with sessions() as session:
                    run = await session.get(Run, run_id)
                    assert run is not None
                    if run.status in RUN_TERMINAL:
                        return run
                await asyncio.sleep(0.2)

    for case in runs:
        assert case.run_id is not None
        run = await finished(case.run_id)
        if case.via != "github-pr":
            assert run.ref == case.ref, "the ref was not stored verbatim"
        assert run.status == "succeeded", (case.via, case.ref, run.failure_reason)
        async with sessions() as session:
            attempt = (await session.scalars(select(StageAttempt).where(StageAttempt.run_id == run.id))).one()
        log = await log_of(sessions, attempt.id)
        assert f"ref=[{run.ref}]" in log, log
        assert _leaks(log) == [], log
        assert "plain ***" in log
    assert glob.glob(f"{canary}*") == [], "a hostile value ran a command"
