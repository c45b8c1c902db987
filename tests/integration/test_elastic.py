"""Elastic under load, on the real services with real processes: while 200 runs execute, the
workers grow 1 → 4 → 1 and the orchestrators 1 → 3 → 1 (scale-in by SIGTERM, which drains).
Every run succeeds, no stage result is committed twice (one attempt per stage, none lost), and the
longest stall after each membership change is measured and printed beside the typical gap between
stage starts (docs/decisions/0026)."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import text

from bench.scenarios._scaling import Change, stalls_after, typical_gap_ms
from tests.integration.cluster import Cluster, until
from tests.integration.conftest import make_repo
from tests.integration.helpers import add_project, start_run, wait_for_run
from tests.integration.processes import CometProcess

pytestmark = pytest.mark.integration

TWO_STAGES = """
stages:
  first: {run: "true", checkout: false}
  second: {run: "true", checkout: false, needs: [first]}
"""
RUNS = 200
RATE_PER_S = 5.0  # 200 runs over 40 s: every change below happens with runs in flight
STALL_WINDOW_S = 5.0  # a rebalance shows within a few seconds of the change that caused it
# When (seconds after the stream starts) the fleet changes: "+worker", "-worker", "+orch", "-orch".
PLAN = [
    (2.0, "+worker"),
    (4.0, "+worker"),
    (6.0, "+worker"),
    (9.0, "+orch"),
    (12.0, "+orch"),
    (17.0, "-worker"),
    (20.0, "-worker"),
    (23.0, "-worker"),
    (27.0, "-orch"),
    (31.0, "-orch"),
]


async def _started(proc: CometProcess, kind: str) -> float:
    """When the process said it started (it registered and began consuming), by the test's clock;
    a process still importing on a loaded machine has not joined anything yet."""
    await until(
        lambda: asyncio.sleep(0, f'"{kind} started"' in proc.output()), timeout_s=60, what=f"{kind} started"
    )
    return time.time()


async def _terminate(proc: CometProcess) -> int:
    """SIGTERM and wait for the process to drain and exit."""
    proc.signal(signal.SIGTERM)
    assert proc.proc is not None
    return await asyncio.to_thread(proc.proc.wait, 60)


@pytest.mark.timeout(300)
async def test_growing_and_shrinking_workers_and_orchestrators_under_load_loses_and_repeats_nothing(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, _ = make_repo(tmp_path / "repo", {".comet.yml": TWO_STAGES})
    project = await add_project(cluster.sessions, str(repo))

    def new_orchestrator() -> CometProcess:
        # Each its own git mirror, as on separate machines (one mirror directory written by two
        # processes at once is not something Comet supports).
        return cluster.orchestrator({"git_cache_dir": str(tmp_path / f"git-orchestrator-{time.time_ns()}")})

    orchestrators = [new_orchestrator()]
    workers = [cluster.worker(concurrency=2)]
    warm = await start_run(cluster.sessions, cluster.topics, project)
    assert (await wait_for_run(cluster.sessions, warm, timeout_s=90)).status == "succeeded", cluster.logs()

    changes: list[Change] = []
    exits: list[tuple[str, int]] = []
    run_ids: list[uuid.UUID] = []
    began = time.time()

    async def stream() -> None:
        for i in range(RUNS):
            await asyncio.sleep(max(0.0, began + i / RATE_PER_S - time.time()))
            run_ids.append(await start_run(cluster.sessions, cluster.topics, project))

    async def scale() -> None:
        for at, step in PLAN:
            await asyncio.sleep(max(0.0, began + at - time.time()))
            kind = "worker" if step.endswith("worker") else "orchestrator"
            group = workers if kind == "worker" else orchestrators
            if step.startswith("+"):
                group.append(new_orchestrator() if kind == "orchestrator" else cluster.worker(concurrency=2))
                changes.append(Change(await _started(group[-1], kind), f"{kind} {len(group)} joined"))
            else:
                leaving = group.pop()
                changes.append(Change(time.time(), f"{kind} {len(group) + 1} left (SIGTERM)"))
                exits.append((kind, await _terminate(leaving)))

    await asyncio.gather(stream(), scale())
    stream_end = time.time()
    assert (len(workers), len(orchestrators)) == (1, 1)
    assert exits == [("worker", 0)] * 3 + [("orchestrator", 0)] * 2, cluster.logs()

    async def all_ended() -> bool:
        async with cluster.sessions() as session:
            left = await session.scalar(
                text("SELECT count(*) FROM runs WHERE id = ANY(:ids) AND finished_at IS NULL"),
                {"ids": run_ids},
            )
        return bool(left == 0)

    await until(all_ended, timeout_s=120, what="every run ended")
    async with cluster.sessions() as session:
        statuses = Counter(
            (
                await session.scalars(text("SELECT status FROM runs WHERE id = ANY(:ids)"), {"ids": run_ids})
            ).all()
        )
        attempts = (
            await session.execute(
                text(
                    "SELECT a.stage_id, a.number, a.status, a.worker_id, extract(epoch FROM a.started_at) AS started "
                    "FROM stage_attempts a WHERE a.run_id = ANY(:ids)"
                ),
                {"ids": run_ids},
            )
        ).all()
        stages = await session.scalar(
            text("SELECT count(*) FROM stages WHERE run_id = ANY(:ids)"), {"ids": run_ids}
        )
        failures = (
            await session.execute(
                text(
                    "SELECT r.failure_reason AS run, s.name, s.failure_reason AS stage FROM runs r "
                    "LEFT JOIN stages s ON s.run_id = r.id AND s.status <> 'succeeded' "
                    "WHERE r.id = ANY(:ids) AND r.status <> 'succeeded'"
                ),
                {"ids": run_ids},
            )
        ).all()

    assert statuses == Counter({"succeeded": RUNS}), f"{failures}\n{cluster.logs()}"
    assert stages == 2 * RUNS
    # No stage result committed twice: exactly one attempt per stage, and it succeeded (nothing was
    # lost with a leaving worker, nothing ran again).
    per_stage = Counter(a.stage_id for a in attempts)
    assert set(per_stage.values()) == {1}
    assert Counter(a.status for a in attempts) == Counter({"succeeded": 2 * RUNS})
    # The fleet shared the work. (Not "every worker took some": on a loaded machine a worker's start
    # can take longer than the stream lasts, and one that joins when nothing is queued takes nothing.)
    assert len({a.worker_id for a in attempts}) >= 2

    starts = [float(a.started) for a in attempts]
    stalls = stalls_after(starts, changes, window_s=STALL_WINDOW_S, end=stream_end)
    worst = max(stalls, key=lambda s: s.gap.ms)
    with capsys.disabled():
        print(
            f"\nelastic: {RUNS} runs, {2 * RUNS} stages at {RATE_PER_S:g} runs/s; all succeeded, one attempt each"
        )
        print(f"elastic: typical gap between stage starts {typical_gap_ms(starts):.0f} ms")
        for stall in stalls:
            print(f"elastic: {stall.describe()}")
        print(
            f"elastic: longest stall after a membership change: {worst.gap.ms:.0f} ms ({worst.change.what})"
        )
