"""Guarantees under faults, with real processes: a killed worker loses no run, a paused worker's
late completion is rejected, a killed orchestrator resumes without running a stage twice."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import StageAttempt
from tests.integration.cluster import Cluster, until
from tests.integration.conftest import make_repo
from tests.integration.helpers import add_project, attempts_of, stages_of, start_run, wait_for_run

pytestmark = pytest.mark.integration


async def attempt_in(
    sessions: async_sessionmaker[AsyncSession], run_id: uuid.UUID, number: int, status: str
) -> StageAttempt | None:
    async with sessions() as session:
        return (
            await session.scalars(
                select(StageAttempt).where(
                    StageAttempt.run_id == run_id,
                    StageAttempt.number == number,
                    StageAttempt.status == status,
                )
            )
        ).first()


SLOW_ON_FIRST_ATTEMPT = """
stages:
  slow:
    retry: {count: 1, when: [lost_worker]}
    run: |
      echo "attempt $COMET_ATTEMPT"
      if [ "$COMET_ATTEMPT" = 1 ]; then sleep 20; fi
      echo finished
"""


async def test_killing_a_worker_mid_stage_loses_no_run(cluster: Cluster, tmp_path: Path) -> None:
    sessions = cluster.sessions
    repo, _ = make_repo(tmp_path / "repo", {".comet.yml": SLOW_ON_FIRST_ATTEMPT})
    project = await add_project(sessions, str(repo))
    cluster.orchestrator()
    doomed = cluster.worker(lease_s=3.0)
    run_id = await start_run(sessions, cluster.topics, project)
    await until(lambda: attempt_in(sessions, run_id, 1, "running"), what="attempt 1 running")

    doomed.kill9()
    cluster.worker(lease_s=3.0)
    run = await wait_for_run(sessions, run_id, timeout_s=60)

    assert run.status == "succeeded", run.failure_reason
    attempts = await attempts_of(sessions, run_id)
    assert [(a.number, a.status) for a in attempts] == [(1, "lost"), (2, "succeeded")]
    assert attempts[0].failure_kind == "lost_worker"


async def test_a_paused_worker_coming_back_after_its_lease_cannot_commit_a_second_result(
    cluster: Cluster, tmp_path: Path
) -> None:
    sessions = cluster.sessions
    definition = """
stages:
  work:
    retry: {count: 1, when: [lost_worker]}
    run: |
      sleep 4
      echo "done by attempt $COMET_ATTEMPT"
"""
    repo, _ = make_repo(tmp_path / "repo", {".comet.yml": definition})
    project = await add_project(sessions, str(repo))
    cluster.orchestrator()
    paused = cluster.worker(lease_s=2.0)
    run_id = await start_run(sessions, cluster.topics, project)
    await until(lambda: attempt_in(sessions, run_id, 1, "running"), what="attempt 1 running")

    paused.signal(signal.SIGSTOP)
    await until(lambda: attempt_in(sessions, run_id, 1, "lost"), what="attempt 1 declared lost")
    cluster.worker(lease_s=5.0)
    await until(lambda: attempt_in(sessions, run_id, 2, "running"), what="attempt 2 running")
    await asyncio.sleep(4.5)  # the paused worker's own stage has finished meanwhile
    paused.signal(signal.SIGCONT)
    run = await wait_for_run(sessions, run_id, timeout_s=60)
    await asyncio.sleep(2)  # give the resumed worker time to try to report

    assert run.status == "succeeded"
    attempts = await attempts_of(sessions, run_id)
    assert [(a.number, a.status) for a in attempts] == [(1, "lost"), (2, "succeeded")]
    assert sum(a.status == "succeeded" for a in attempts) == 1
    stages = await stages_of(sessions, run_id)
    assert stages["work"].attempt == 2


async def test_killing_the_orchestrator_mid_run_resumes_without_running_any_stage_twice(
    cluster: Cluster, tmp_path: Path
) -> None:
    sessions = cluster.sessions
    definition = """
stages:
  one: {run: "sleep 1; echo one"}
  two: {needs: [one], run: "sleep 1; echo two"}
  three: {needs: [two], run: "sleep 1; echo three"}
"""
    repo, _ = make_repo(tmp_path / "repo", {".comet.yml": definition})
    project = await add_project(sessions, str(repo))
    orchestrator = cluster.orchestrator()
    cluster.worker(lease_s=10.0)
    run_id = await start_run(sessions, cluster.topics, project)
    await until(lambda: attempt_in(sessions, run_id, 1, "running"), what="first stage running")

    orchestrator.kill9()
    await asyncio.sleep(1.5)  # stage one finishes while nobody orchestrates
    cluster.orchestrator()
    run = await wait_for_run(sessions, run_id, timeout_s=60)

    assert run.status == "succeeded", run.failure_reason
    attempts = await attempts_of(sessions, run_id)
    assert sorted(a.number for a in attempts) == [1, 1, 1], "a stage ran twice"
    assert all(a.status == "succeeded" for a in attempts)


async def test_sigterm_drains_a_worker_letting_its_running_stage_finish_and_report(
    cluster: Cluster, tmp_path: Path
) -> None:
    sessions = cluster.sessions
    repo, _ = make_repo(tmp_path / "repo", {".comet.yml": "stages:\n  work: {run: 'sleep 2; echo done'}\n"})
    project = await add_project(sessions, str(repo))
    cluster.orchestrator()
    draining = cluster.worker(lease_s=10.0)
    run_id = await start_run(sessions, cluster.topics, project)
    await until(lambda: attempt_in(sessions, run_id, 1, "running"), what="attempt running")

    draining.signal(signal.SIGTERM)
    exit_code = await asyncio.to_thread(draining.proc.wait, 60)  # type: ignore[union-attr]
    run = await wait_for_run(sessions, run_id, timeout_s=30)

    assert exit_code == 0
    assert run.status == "succeeded"
    assert [(a.number, a.status) for a in await attempts_of(sessions, run_id)] == [(1, "succeeded")]


async def test_a_drain_timeout_hands_the_stage_back_at_once_as_a_lost_attempt(
    cluster: Cluster, tmp_path: Path
) -> None:
    sessions = cluster.sessions
    repo, _ = make_repo(tmp_path / "repo", {".comet.yml": SLOW_ON_FIRST_ATTEMPT})
    project = await add_project(sessions, str(repo))
    cluster.orchestrator()
    leaving = cluster.worker(lease_s=60.0, drain_timeout_s=1.0)
    run_id = await start_run(sessions, cluster.topics, project)
    await until(lambda: attempt_in(sessions, run_id, 1, "running"), what="attempt 1 running")

    leaving.signal(signal.SIGTERM)
    lost = await until(
        lambda: attempt_in(sessions, run_id, 1, "lost"), timeout_s=30, what="attempt 1 handed back"
    )
    cluster.worker(lease_s=60.0)
    run = await wait_for_run(sessions, run_id, timeout_s=60)

    assert "drain timeout" in (lost.failure_reason or "")
    assert run.status == "succeeded"
    assert [(a.number, a.status) for a in await attempts_of(sessions, run_id)] == [
        (1, "lost"),
        (2, "succeeded"),
    ]


async def test_two_orchestrators_share_the_runs_and_no_stage_runs_twice(
    cluster: Cluster, tmp_path: Path
) -> None:
    sessions = cluster.sessions
    definition = "stages:\n  a: {run: 'true'}\n  b: {run: 'true'}\n  c: {needs: [a, b], run: 'true'}\n"
    repo, sha = make_repo(tmp_path / "repo", {".comet.yml": definition})
    project = await add_project(sessions, str(repo))
    cluster.orchestrator()
    cluster.orchestrator()
    cluster.worker(lease_s=10.0)

    run_ids = [await start_run(sessions, cluster.topics, project, sha=sha) for _ in range(12)]
    runs = [await wait_for_run(sessions, run_id, timeout_s=90) for run_id in run_ids]

    assert {r.status for r in runs} == {"succeeded"}
    for run_id in run_ids:
        attempts = await attempts_of(sessions, run_id)
        assert sorted(a.number for a in attempts) == [1, 1, 1]
