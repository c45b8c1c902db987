"""The first runs, end to end on the real Kafka and Postgres: API-side run creation → outbox →
orchestrator plans `.comet.yml` from a real git repository → workers run stages → results."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from events.topics import Topics
from tests.integration.conftest import Platform, make_repo
from tests.integration.helpers import (
    add_project,
    attempts_of,
    log_of,
    stages_of,
    start_run,
    summary,
    wait_for_run,
)

pytestmark = pytest.mark.integration

FAN_OUT_IN = """
name: diamond
stages:
  prepare:
    run: echo preparing
  left:
    needs: [prepare]
    run: |
      echo "left on $COMET_STAGE attempt $COMET_ATTEMPT"
      sleep 1
  right:
    needs: [prepare]
    run: |
      echo right
      sleep 1
  join:
    needs: [left, right]
    run: echo "joined at $COMET_SHA"
"""


async def test_fan_out_fan_in_run_succeeds_with_its_parallel_stages_overlapping(
    platform: Platform, sessions: async_sessionmaker[AsyncSession], namespace: str, tmp_path: Path
) -> None:
    repo, sha = make_repo(tmp_path / "repo", {".comet.yml": FAN_OUT_IN})
    project = await add_project(sessions, f"file://{repo}")

    run_id = await start_run(sessions, Topics(namespace), project)
    run = await wait_for_run(sessions, run_id)

    assert run.status == "succeeded", run.failure_reason
    assert run.sha == sha
    stages = await stages_of(sessions, run_id)
    assert summary(stages) == {
        "prepare": "succeeded",
        "left": "succeeded",
        "right": "succeeded",
        "join": "succeeded",
    }
    left, right, join = stages["left"], stages["right"], stages["join"]
    assert left.started_at
    assert left.finished_at
    assert right.started_at
    assert right.finished_at
    assert join.started_at
    assert left.started_at < right.finished_at
    assert right.started_at < left.finished_at, "left and right did not run at the same time"
    assert join.started_at >= max(left.finished_at, right.finished_at)
    attempts = {a.stage_id: a for a in await attempts_of(sessions, run_id)}
    left_log = await log_of(sessions, attempts[left.id].id)
    assert "left on left attempt 1" in left_log
    assert sha in await log_of(sessions, attempts[join.id].id)


async def test_a_failing_stage_fails_its_run_with_its_exit_code(
    platform: Platform, sessions: async_sessionmaker[AsyncSession], namespace: str, tmp_path: Path
) -> None:
    definition = "stages:\n  build:\n    run: |\n      echo about to fail\n      exit 3\n  ship:\n    needs: [build]\n    run: echo never\n"
    repo, _ = make_repo(tmp_path / "repo", {".comet.yml": definition})
    project = await add_project(sessions, str(repo))

    run = await wait_for_run(sessions, await start_run(sessions, Topics(namespace), project))

    assert run.status == "failed"
    stages = await stages_of(sessions, run.id)
    assert stages["build"].exit_code == 3
    assert stages["ship"].status == "skipped"
    assert run.failure_reason is not None
    assert "build" in run.failure_reason
    assert "3" in run.failure_reason


@pytest.mark.parametrize(
    ("definition", "reason"),
    [
        ("stages:\n  a:\n    needs: [b]\n    run: 'true'\n  b:\n    needs: [a]\n    run: 'true'\n", "cycle"),
        ("stages:\n  a:\n    needs: [nope]\n    run: 'true'\n", "nope"),
        ("stages:\n  a:\n    run: 'true'\n    timeout: soon\n", "line 4"),
        ("stages:\n  a: {run: 'true'\n", "invalid YAML"),
        ("stages:\n  a:\n    run: 'true'\n    colour: red\n", "colour"),
        ("stages:\n  a:\n    run: 'true'\n    if: \"ref ==\"\n", "line 4"),
        ("stages:\n  a:\n    needs: []\n", "neither run nor steps"),
        ("stages: {}\n", "stages"),
        ("stages:\n  a:\n    run: 'true'\n    retry: 99\n", "retry"),
    ],
    ids=[
        "cycle",
        "unknown-need",
        "bad-duration",
        "bad-yaml",
        "unknown-key",
        "bad-if",
        "no-script",
        "no-stages",
        "retry-too-high",
    ],
)
async def test_an_invalid_definition_fails_the_run_with_the_reason(
    platform: Platform,
    sessions: async_sessionmaker[AsyncSession],
    namespace: str,
    tmp_path: Path,
    definition: str,
    reason: str,
) -> None:
    repo, _ = make_repo(tmp_path / "repo", {".comet.yml": definition})
    project = await add_project(sessions, str(repo))

    run = await wait_for_run(sessions, await start_run(sessions, Topics(namespace), project))

    assert run.status == "failed"
    assert run.failure_reason is not None
    assert reason in run.failure_reason


async def test_a_repository_without_a_definition_fails_the_run_saying_so(
    platform: Platform, sessions: async_sessionmaker[AsyncSession], namespace: str, tmp_path: Path
) -> None:
    repo, _ = make_repo(tmp_path / "repo", {"README.md": "hello"})
    project = await add_project(sessions, str(repo))

    run = await wait_for_run(sessions, await start_run(sessions, Topics(namespace), project))

    assert run.status == "failed"
    assert ".comet.yml" in (run.failure_reason or "")
