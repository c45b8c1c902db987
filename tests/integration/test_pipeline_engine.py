"""The pipeline engine end to end: matrix, retries, timeouts, cancellation with the process tree
gone, re-running only what failed, concurrency groups — on the real Kafka and Postgres."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.crypto import SecretBox
from db.models import LogChunk
from db.repositories.secrets import put_secret
from events.topics import Topics
from schemas.states import RunStatus
from tests.integration.conftest import TEST_SECRET_KEY, Platform, make_repo
from tests.integration.helpers import (
    add_project,
    attempts_of,
    log_of,
    owner_headers,
    request_cancel,
    request_retry,
    stages_of,
    start_run,
    summary,
    wait_for_run,
)

pytestmark = pytest.mark.integration


async def _project(sessions: async_sessionmaker[AsyncSession], tmp_path: Path, definition: str) -> uuid.UUID:
    repo, _ = make_repo(tmp_path / "repo", {".comet.yml": definition})
    return await add_project(sessions, str(repo))


async def test_a_matrix_expands_into_legs_that_see_their_values_and_fan_in(
    platform: Platform, sessions: async_sessionmaker[AsyncSession], namespace: str, tmp_path: Path
) -> None:
    definition = """
stages:
  unit:
    matrix: {python: ["3.11", "3.12"], db: [pg]}
    run: echo "python=$MATRIX_PYTHON db=$MATRIX_DB"
  report:
    needs: [unit]
    run: echo all legs done
"""
    project = await _project(sessions, tmp_path, definition)
    run = await wait_for_run(sessions, await start_run(sessions, Topics(namespace), project))

    assert run.status == "succeeded", run.failure_reason
    stages = await stages_of(sessions, run.id)
    assert summary(stages) == {
        "unit[python=3.11,db=pg]": "succeeded",
        "unit[python=3.12,db=pg]": "succeeded",
        "report": "succeeded",
    }
    attempts = {a.stage_id: a for a in await attempts_of(sessions, run.id)}
    leg_log = await log_of(sessions, attempts[stages["unit[python=3.12,db=pg]"].id].id)
    assert "python=3.12 db=pg" in leg_log


async def test_a_stage_with_checkout_false_starts_in_an_empty_workspace(
    platform: Platform, sessions: async_sessionmaker[AsyncSession], namespace: str, tmp_path: Path
) -> None:
    definition = """
stages:
  fetchless:
    checkout: false
    run: echo "entries=$(ls -A | wc -l)"
  checked-out:
    run: echo "checked out $(test -f .comet.yml && git rev-parse HEAD)"
"""
    project = await _project(sessions, tmp_path, definition)
    run = await wait_for_run(sessions, await start_run(sessions, Topics(namespace), project))

    assert run.status == "succeeded", run.failure_reason
    stages = await stages_of(sessions, run.id)
    attempts = {a.stage_id: a for a in await attempts_of(sessions, run.id)}
    assert "entries=0" in await log_of(sessions, attempts[stages["fetchless"].id].id)
    assert f"checked out {run.sha}" in await log_of(sessions, attempts[stages["checked-out"].id].id)


async def test_a_failed_stage_is_retried_as_a_new_attempt_and_can_succeed(
    platform: Platform, sessions: async_sessionmaker[AsyncSession], namespace: str, tmp_path: Path
) -> None:
    marker = tmp_path / "second-time"
    definition = f"""
stages:
  flaky:
    retry: 2
    run: |
      if [ ! -e {marker} ]; then touch {marker}; echo "first try fails"; exit 1; fi
      echo "second try passes"
"""
    project = await _project(sessions, tmp_path, definition)
    run = await wait_for_run(sessions, await start_run(sessions, Topics(namespace), project))

    assert run.status == "succeeded"
    attempts = await attempts_of(sessions, run.id)
    assert [(a.number, a.status, a.exit_code) for a in attempts] == [(1, "failed", 1), (2, "succeeded", 0)]


async def test_a_stage_past_its_timeout_is_killed_and_fails_as_a_timeout(
    platform: Platform, sessions: async_sessionmaker[AsyncSession], namespace: str, tmp_path: Path
) -> None:
    definition = "stages:\n  hang:\n    timeout: 1s\n    run: sleep 30\n"
    project = await _project(sessions, tmp_path, definition)
    run = await wait_for_run(sessions, await start_run(sessions, Topics(namespace), project))

    assert run.status == "failed"
    stage = (await stages_of(sessions, run.id))["hang"]
    assert stage.failure_kind == "timeout"
    assert "timed out" in (stage.failure_reason or "")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


async def test_cancel_mid_stage_stops_the_whole_process_tree(
    platform: Platform, sessions: async_sessionmaker[AsyncSession], namespace: str, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    definition = f"""
stages:
  long:
    run: |
      sleep 300 &
      echo "$$ $!" > {pids}
      wait
  after:
    needs: [long]
    run: echo never
"""
    project = await _project(sessions, tmp_path, definition)
    topics = Topics(namespace)
    run_id = await start_run(sessions, topics, project)
    async with asyncio.timeout(60):
        while not pids.exists() or len(pids.read_text().split()) < 2:
            await asyncio.sleep(0.05)
    shell, child = (int(p) for p in pids.read_text().split())

    await request_cancel(sessions, topics, run_id, reason="no longer needed")
    run = await wait_for_run(sessions, run_id)

    assert run.status == "cancelled"
    assert run.failure_reason == "no longer needed"
    assert summary(await stages_of(sessions, run_id)) == {"long": "cancelled", "after": "cancelled"}
    async with asyncio.timeout(10):
        while _alive(shell) or _alive(child):
            await asyncio.sleep(0.05)


async def test_retry_reruns_only_the_failed_and_skipped_stages(
    platform: Platform, sessions: async_sessionmaker[AsyncSession], namespace: str, tmp_path: Path
) -> None:
    fixed = tmp_path / "fixed"
    definition = f"""
stages:
  build: {{run: echo built}}
  test:
    needs: [build]
    run: test -e {fixed}
  ship:
    needs: [test]
    run: echo shipped
"""
    project = await _project(sessions, tmp_path, definition)
    topics = Topics(namespace)
    run = await wait_for_run(sessions, await start_run(sessions, topics, project))
    assert summary(await stages_of(sessions, run.id)) == {
        "build": "succeeded",
        "test": "failed",
        "ship": "skipped",
    }

    fixed.touch()
    await request_retry(sessions, topics, run.id)
    await wait_for_run(sessions, run.id, until=frozenset({RunStatus.QUEUED, RunStatus.RUNNING}))
    run = await wait_for_run(sessions, run.id)

    assert run.status == "succeeded"
    assert run.retries == 1
    attempts = await attempts_of(sessions, run.id)
    stages = await stages_of(sessions, run.id)
    by_stage = {name: [a.number for a in attempts if a.stage_id == s.id] for name, s in stages.items()}
    assert by_stage == {"build": [1], "test": [1, 2], "ship": [1]}


async def test_a_concurrency_queue_runs_one_at_a_time_and_refuses_overflow_with_a_reason(
    platform: Platform, sessions: async_sessionmaker[AsyncSession], namespace: str, tmp_path: Path
) -> None:
    definition = """
concurrency: {group: "deploy-${{ ref }}", queue: 1}
stages:
  deploy: {run: "sleep 1.5; echo deployed"}
"""
    project = await _project(sessions, tmp_path, definition)
    topics = Topics(namespace)
    first = await start_run(sessions, topics, project)
    await wait_for_run(sessions, first, until=frozenset({RunStatus.QUEUED, RunStatus.RUNNING}))
    second = await start_run(sessions, topics, project)
    await wait_for_run(sessions, second, until=frozenset({RunStatus.QUEUED}))
    third = await start_run(sessions, topics, project)

    refused = await wait_for_run(sessions, third)
    one, two = await wait_for_run(sessions, first), await wait_for_run(sessions, second)

    assert refused.status == "failed"
    assert "is full" in (refused.failure_reason or "")
    assert one.status == "succeeded"
    assert two.status == "succeeded"
    assert one.finished_at is not None
    assert two.started_at is not None
    assert two.started_at >= one.finished_at, "the waiting run started before the active one finished"


async def test_cancel_in_progress_cancels_the_older_run_of_the_group(
    platform: Platform, sessions: async_sessionmaker[AsyncSession], namespace: str, tmp_path: Path
) -> None:
    definition = """
concurrency: {group: "pr-${{ branch }}", cancel_in_progress: true}
stages:
  check: {run: "sleep $DELAY; echo checked"}
"""
    project = await _project(sessions, tmp_path, definition)
    topics = Topics(namespace)
    older = await start_run(sessions, topics, project, variables={"DELAY": "60"})
    await wait_for_run(sessions, older, until=frozenset({RunStatus.RUNNING}))
    newer = await start_run(sessions, topics, project, variables={"DELAY": "0"})

    cancelled = await wait_for_run(sessions, older)
    done = await wait_for_run(sessions, newer)

    assert cancelled.status == "cancelled"
    assert "concurrency group" in (cancelled.failure_reason or "")
    assert done.status == "succeeded"


async def test_a_project_secret_reaches_the_stage_and_is_masked_even_split_across_log_chunks(
    platform: Platform, sessions: async_sessionmaker[AsyncSession], namespace: str, tmp_path: Path
) -> None:
    secret = "hunter2-very-secret-value"
    definition = """
stages:
  leak:
    run: |
      test "$DEPLOY_TOKEN" = "hunter2-very-secret-value"
      printf 'token is hunter2-very'
      sleep 0.5
      printf -- '-secret-value and again %s\\n' "$DEPLOY_TOKEN"
"""
    project = await _project(sessions, tmp_path, definition)
    async with sessions.begin() as session:
        await put_secret(session, SecretBox(TEST_SECRET_KEY), project, "DEPLOY_TOKEN", secret)

    run = await wait_for_run(sessions, await start_run(sessions, Topics(namespace), project))

    assert run.status == "succeeded", run.failure_reason
    attempt = (await attempts_of(sessions, run.id))[0]
    log = await log_of(sessions, attempt.id)
    async with sessions() as session:
        chunks = (await session.scalars(select(LogChunk).where(LogChunk.attempt_id == attempt.id))).all()
    assert len(chunks) >= 2, "the secret was not split across chunks"
    assert secret not in log
    assert "hunter2" not in log
    assert log.count("***") == 2


async def test_stages_of_two_projects_claimed_together_each_get_their_own_projects_secrets(
    platform: Platform, sessions: async_sessionmaker[AsyncSession], namespace: str, tmp_path: Path
) -> None:
    # A worker reads the secrets of everything it claims in the claim's transaction, in one query.
    projects = []
    for name in ("alpha", "beta"):
        definition = f'stages:\n  check:\n    run: test "$TOKEN" = "token-of-{name}"\n'
        project = await _project(sessions, tmp_path / name, definition)
        async with sessions.begin() as session:
            await put_secret(session, SecretBox(TEST_SECRET_KEY), project, "TOKEN", f"token-of-{name}")
        projects.append(project)
    plain = await _project(sessions, tmp_path / "plain", 'stages:\n  check:\n    run: test -z "${TOKEN:-}"\n')

    topics = Topics(namespace)
    started = [await start_run(sessions, topics, p) for p in [*projects, plain]]
    runs = await asyncio.gather(*(wait_for_run(sessions, r) for r in started))

    assert [r.status for r in runs] == ["succeeded"] * 3, [r.failure_reason for r in runs]


async def test_a_retry_waits_out_its_backoff_before_the_next_attempt(
    platform: Platform, sessions: async_sessionmaker[AsyncSession], namespace: str, tmp_path: Path
) -> None:
    definition = "stages:\n  flaky:\n    retry: {count: 1, backoff: 2s}\n    run: exit 1\n"
    project = await _project(sessions, tmp_path, definition)
    run = await wait_for_run(sessions, await start_run(sessions, Topics(namespace), project))

    assert run.status == "failed"
    first, second = await attempts_of(sessions, run.id)
    assert first.finished_at is not None
    assert second.started_at is not None
    assert (second.started_at - first.finished_at).total_seconds() >= 2.0


async def test_an_approval_gate_holds_the_stage_until_a_maintainer_approves_it(
    platform: Platform,
    api_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    namespace: str,
    tmp_path: Path,
) -> None:
    definition = """
stages:
  build: {run: echo built}
  deploy:
    needs: [build]
    environment: production
    approval: true
    run: echo deployed
"""
    project = await _project(sessions, tmp_path, definition)
    run_id = await start_run(sessions, Topics(namespace), project)
    async with asyncio.timeout(60):
        while (await stages_of(sessions, run_id)).get("deploy") is None or (
            await stages_of(sessions, run_id)
        )["deploy"].status != "waiting_approval":
            await asyncio.sleep(0.05)
    assert (await wait_for_run(sessions, run_id, until=frozenset({RunStatus.RUNNING}))).status == "running"
    owner = await owner_headers(api_client, sessions, project)

    too_early = await api_client.post(f"/api/v1/runs/{run_id}/stages/build/approve", headers=owner)
    approved = await api_client.post(f"/api/v1/runs/{run_id}/stages/deploy/approve", headers=owner)
    run = await wait_for_run(sessions, run_id)

    assert too_early.status_code == 409
    assert approved.status_code == 202, approved.text
    assert run.status == "succeeded"
    assert (await stages_of(sessions, run_id))["deploy"].status == "succeeded"
