"""A test suite's run, end to end on the real Kafka and Postgres: the API creates it, the orchestrator
plans only the suite's stages and what they need, the workers run them and the run succeeds; a
suite that selects no stage of the `.comet.yml` fails its run at once saying so."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.integration.conftest import Platform, make_repo
from tests.integration.helpers import add_project, owner_headers, stages_of, summary, wait_for_run

pytestmark = pytest.mark.integration

# Stages outside a suite fail if they run at all, so a run that held them could not succeed.
PIPELINE = """
name: suites
stages:
  lint:
    run: echo lint
  unit:
    needs: [lint]
    matrix: {python: ["3.11", "3.12"]}
    run: echo "unit on $MATRIX_PYTHON"
  e2e:
    needs: [lint]
    run: exit 1
  deploy:
    needs: [unit, e2e]
    run: exit 1
"""


async def _suite_run(
    client: httpx.AsyncClient, headers: dict[str, str], project_id: uuid.UUID, name: str, stages: list[str]
) -> uuid.UUID:
    created = await client.post(
        f"/api/v1/projects/{project_id}/test-suites", json={"name": name, "stages": stages}, headers=headers
    )
    assert created.status_code == 201, created.text
    started = await client.post(
        f"/api/v1/projects/{project_id}/test-suites/{created.json()['id']}/runs", headers=headers
    )
    assert started.status_code == 202, started.text
    return uuid.UUID(started.json()["run_id"])


async def test_a_suite_run_holds_only_its_stages_and_what_they_need_and_succeeds(
    platform: Platform,
    api_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    repo, sha = make_repo(tmp_path / "repo", {".comet.yml": PIPELINE})
    project = await add_project(sessions, str(repo))
    headers = await owner_headers(api_client, sessions, project)

    run = await wait_for_run(
        sessions, await _suite_run(api_client, headers, project, "py312", ["unit[python=3.12]"])
    )

    assert run.status == "succeeded", run.failure_reason
    assert run.sha == sha
    stages = await stages_of(sessions, run.id)
    assert summary(stages) == {"lint": "succeeded", "unit[python=3.12]": "succeeded"}
    assert run.trigger["kind"] == "test_suite"
    assert run.trigger["stages"] == ["unit[python=3.12]"]

    every_leg = await wait_for_run(sessions, await _suite_run(api_client, headers, project, "units", ["un*"]))
    assert every_leg.status == "succeeded", every_leg.failure_reason
    assert set(summary(await stages_of(sessions, every_leg.id))) == {
        "lint",
        "unit[python=3.11]",
        "unit[python=3.12]",
    }


async def test_a_suite_selecting_no_stage_fails_its_run_at_once_saying_so(
    platform: Platform,
    api_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    repo, sha = make_repo(tmp_path / "repo", {".comet.yml": PIPELINE})
    project = await add_project(sessions, str(repo))
    headers = await owner_headers(api_client, sessions, project)

    run = await wait_for_run(
        sessions, await _suite_run(api_client, headers, project, "integration", ["integ*"])
    )

    assert run.status == "failed"
    assert run.failure_reason is not None
    assert run.failure_reason.startswith(
        f"test suite 'integration' selects no stage of .comet.yml at {sha[:12]}: integ* match none"
    )
    assert "unit[python=3.11]" in run.failure_reason
    assert await stages_of(sessions, run.id) == {}
