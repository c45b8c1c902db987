"""Guarantees under faults, with real processes: a killed worker loses no run, a paused worker's
late completion is rejected, a killed orchestrator resumes without running a stage twice."""

from __future__ import annotations

import asyncio
import secrets
import signal
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import StageAttempt
from events.topics import Topics
from tests.integration.conftest import make_repo
from tests.integration.helpers import add_project, attempts_of, stages_of, start_run, wait_for_run
from tests.integration.processes import CometProcess, process_env

pytestmark = pytest.mark.integration


class Cluster:
    """Orchestrator and workers as subprocesses in a namespace of their own."""

    def __init__(self, common: dict[str, Any], root: Path) -> None:
        self.namespace = f"f{secrets.token_hex(4)}"
        self.common = {**common, "topic_namespace": self.namespace, "git_cache_dir": str(root / "git")}
        self.root = root
        self.procs: list[CometProcess] = []

    @property
    def topics(self) -> Topics:
        return Topics(self.namespace)

    def orchestrator(self) -> CometProcess:
        env = process_env(self.common, reaper_interval_s="0.5")
        proc = CometProcess(["orchestrator"], env, self.root / f"orchestrator-{len(self.procs)}.log").start()
        self.procs.append(proc)
        return proc

    def worker(
        self, pool: str = "default", *, lease_s: float = 3.0, drain_timeout_s: float = 300
    ) -> CometProcess:
        env = process_env(
            self.common,
            lease_s=lease_s,
            drain_timeout_s=drain_timeout_s,
            heartbeat_s="0.5",
            kill_grace_s="2",
            workspace_dir=str(self.root / f"ws-{len(self.procs)}"),
        )
        proc = CometProcess(
            ["worker", "--pool", pool, "--concurrency", "2"], env, self.root / f"worker-{len(self.procs)}.log"
        ).start()
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.stop()


@pytest.fixture
async def cluster(common_env: dict[str, Any], tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(common_env, tmp_path)
    yield c
    await asyncio.to_thread(c.stop_all)


async def until(check: Callable[[], Any], timeout_s: float = 60.0, what: str = "condition") -> Any:
    async with asyncio.timeout(timeout_s):
        while True:
            value = await check()
            if value:
                return value
            await asyncio.sleep(0.1)
    raise AssertionError(what)  # pragma: no cover - asyncio.timeout raises first


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


async def test_killing_a_worker_mid_stage_loses_no_run(
    cluster: Cluster, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
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
    cluster: Cluster, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
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
    cluster: Cluster, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
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
    cluster: Cluster, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
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
    cluster: Cluster, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
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
    cluster: Cluster, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
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
