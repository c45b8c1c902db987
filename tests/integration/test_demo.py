"""The demo `make run` seeds does what the README promises: its pipeline succeeds on the first
run, with test results, coverage, a flaky test flagged and a split suite across two legs."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cli.demo import ensure_repo
from db.models import CoverageReport, TestCase
from events.topics import Topics
from tests.integration.conftest import Platform, git
from tests.integration.helpers import add_project, stages_of, start_run, wait_for_run

pytestmark = pytest.mark.integration


async def test_the_demo_pipeline_shows_tests_coverage_and_a_flaky_test_on_its_first_run(
    platform: Platform, sessions: async_sessionmaker[AsyncSession], namespace: str, tmp_path: Path
) -> None:
    repo = tmp_path / "demo-repo"
    ensure_repo(repo)
    ensure_repo(repo)  # idempotent: nothing new to commit
    assert git(repo, "rev-list", "--count", "HEAD") == "1"
    project = await add_project(sessions, f"file://{repo}")
    run_id = await start_run(sessions, Topics(namespace), project)
    run = await wait_for_run(sessions, run_id, timeout_s=180)

    assert run.status == "succeeded", run.failure_reason
    stages = await stages_of(sessions, run_id)
    assert {"e2e[1/2]", "e2e[2/2]", "compat[python=3.11]", "tests", "package"} <= set(stages)
    assert stages["tests"].attempt == 2
    async with sessions() as session:
        cases = (await session.scalars(select(TestCase).where(TestCase.run_id == run_id))).all()
        coverage = (
            await session.scalars(select(CoverageReport).where(CoverageReport.run_id == run_id))
        ).all()
    flaky = {c.name for c in cases if c.flaky}
    assert flaky == {"test_flaky"}
    assert {c.name for c in cases if c.stage.startswith("e2e[")} == {f"test_flow_{n}" for n in range(1, 7)}
    assert {c.status for c in cases if c.name == "test_gpu"} == {"skipped"}
    assert coverage
    assert all(c.line_rate is not None and c.line_rate >= 0.6 for c in coverage)
