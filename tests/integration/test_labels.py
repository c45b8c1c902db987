"""Label routing on the real services, with real processes: a stage runs only on a worker of its
pool advertising all of its labels; one that no live worker can take waits (never fails) and the
queues say why; a worker with the labels that joins later runs it at once."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from db.models import Stage, StageAttempt
from db.repositories.fleet import QueueRow, list_queues
from schemas.states import RunStatus
from tests.integration.cluster import Cluster, until
from tests.integration.conftest import make_repo
from tests.integration.helpers import add_project, start_run, wait_for_run
from tests.integration.processes import COMET, process_env

pytestmark = pytest.mark.integration

LABELLED = """
stages:
  anywhere:
    checkout: false
    run: "true"
  on-amd64:
    checkout: false
    labels: {arch: amd64}
    run: "true"
  on-arm64:
    checkout: false
    labels: {arch: arm64, gpu: true}
    run: "true"
"""


async def _stages(cluster: Cluster, run_id: uuid.UUID) -> dict[str, tuple[str, list[StageAttempt]]]:
    async with cluster.sessions() as session:
        stages = (await session.scalars(select(Stage).where(Stage.run_id == run_id))).all()
        attempts = (await session.scalars(select(StageAttempt).where(StageAttempt.run_id == run_id))).all()
    return {s.name: (s.status, [a for a in attempts if a.stage_id == s.id]) for s in stages}


async def _queue(cluster: Cluster, pool: str) -> QueueRow | None:
    async with cluster.sessions() as session:
        return next((q for q in await list_queues(session) if q.pool == pool), None)


def _worker_of(pid: int, worker_id: str | None) -> bool:
    return worker_id is not None and f"-{pid}-" in worker_id


@pytest.mark.timeout(180)
async def test_labelled_stages_run_only_on_matching_workers_and_a_late_worker_takes_what_waited(
    cluster: Cluster, tmp_path: Path
) -> None:
    repo, _ = make_repo(tmp_path / "repo", {".comet.yml": LABELLED})
    project = await add_project(cluster.sessions, str(repo))
    cluster.orchestrator()
    amd = cluster.worker(env={"labels": "arch=amd64,os=linux"})
    run_id = await start_run(cluster.sessions, cluster.topics, project)

    async def two_done() -> bool:
        stages = await _stages(cluster, run_id)
        return all(stages.get(n, ("",))[0] == "succeeded" for n in ("anywhere", "on-amd64"))

    await until(two_done, timeout_s=60, what="the unlabelled and the amd64 stage succeeded")
    # The arm64 stage waits: queued with its labels, not failed, the run still going.
    await asyncio.sleep(3)  # several sweeps and notifications: nobody may take it
    stages = await _stages(cluster, run_id)
    status, attempts = stages["on-arm64"]
    assert status == "queued", cluster.logs()
    assert [(a.status, a.labels) for a in attempts] == [("queued", {"arch": "arm64", "gpu": "true"})]
    assert all(
        _worker_of(amd.pid, a.worker_id) for _, (_, done) in stages.items() for a in done if a.worker_id
    )
    run = await wait_for_run(cluster.sessions, run_id, until=frozenset({RunStatus.RUNNING}), timeout_s=5)
    assert run.status == "running"

    queue = await until(lambda: _queue(cluster, "default"), what="the default pool's queue")
    assert queue.depth == 1
    assert queue.unschedulable == 1
    assert queue.reason is not None
    assert queue.reason.startswith("no live worker in pool default has arch=arm64,gpu=true"), queue.reason
    shown = subprocess.run(
        [COMET, "workers"],
        check=False,
        env={**process_env(cluster.common), "COLUMNS": "400"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert "no live worker in pool default has arch=arm64,gpu=true" in shown.stdout, shown.stdout

    arm = cluster.worker(env={"labels": "gpu=true,arch=arm64,os=linux"})
    run = await wait_for_run(cluster.sessions, run_id, timeout_s=60)

    assert run.status == "succeeded", cluster.logs()
    stages = await _stages(cluster, run_id)
    [arm_attempt] = stages["on-arm64"][1]
    assert _worker_of(arm.pid, arm_attempt.worker_id), arm_attempt.worker_id
    [amd_attempt] = stages["on-amd64"][1]
    assert _worker_of(amd.pid, amd_attempt.worker_id), amd_attempt.worker_id
    queue_after = await _queue(cluster, "default")
    assert queue_after is None or (queue_after.depth == 0 and queue_after.reason is None)


@pytest.mark.timeout(120)
async def test_a_stage_of_a_pool_nobody_serves_waits_with_the_reason(
    cluster: Cluster, tmp_path: Path
) -> None:
    repo, _ = make_repo(
        tmp_path / "repo",
        {".comet.yml": 'stages:\n  build:\n    pool: linux\n    checkout: false\n    run: "true"\n'},
    )
    project = await add_project(cluster.sessions, str(repo))
    cluster.orchestrator()
    cluster.worker()  # serves `default`, not `linux`
    run_id = await start_run(cluster.sessions, cluster.topics, project)

    queue = await until(lambda: _queue(cluster, "linux"), what="the linux pool's queue")

    assert (queue.depth, queue.workers, queue.unschedulable) == (1, 0, 1)
    assert queue.reason is not None
    assert queue.reason.startswith("no live worker in pool linux"), queue.reason
    cluster.worker("linux")
    run = await wait_for_run(cluster.sessions, run_id, timeout_s=60)
    assert run.status == "succeeded", cluster.logs()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--pool", "Linux Boxes"], "--pool: 'Linux Boxes' is not a valid pool name"),
        (["--labels", "arch"], "--labels: label 'arch' is not key=value"),
        (["--labels", "arch=arm 64"], "--labels: label value 'arm 64' of 'arch' is not valid"),
    ],
)
def test_a_worker_with_a_bad_pool_or_labels_stops_at_start_with_one_line(
    common_env: dict[str, object], args: list[str], says: str
) -> None:
    done = subprocess.run(
        [COMET, "worker", *args],
        check=False,
        env=process_env(common_env),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode != 0
    assert done.stderr.count("\n") == 1, done.stderr
    assert says in done.stderr
