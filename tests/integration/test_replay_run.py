"""`comet replay run RUN_ID` on the real services: the histories a real orchestrator and workers
wrote (parallel stages, a retry, a failure, a cancel) are re-decided by today's decide() exactly as
recorded; a decision the record holds but today's code would not take is flagged, with exit 1; an
unknown run is one line."""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from tests.integration.cluster import Cluster, until
from tests.integration.conftest import make_repo
from tests.integration.helpers import add_project, request_cancel, start_run, wait_for_run
from tests.integration.processes import process_env
from tests.integration.test_replay_events import BUSY, SLOW, _comet, _stage_running

pytestmark = pytest.mark.integration


def _audit(env: dict[str, str], run_id: uuid.UUID) -> tuple[int, dict[str, Any]]:
    done = _comet(env, "replay", "run", str(run_id), "--json")
    assert done.stderr == "", done.stderr
    return done.returncode, json.loads(done.stdout)


@pytest.mark.timeout(300)
async def test_real_histories_are_re_decided_as_recorded_and_a_tampered_decision_is_flagged(
    cluster: Cluster, tmp_path: Path
) -> None:
    sessions, topics = cluster.sessions, cluster.topics
    busy_repo, _ = make_repo(tmp_path / "busy", {".comet.yml": BUSY})
    slow_repo, _ = make_repo(tmp_path / "slow", {".comet.yml": SLOW})
    busy = await add_project(sessions, str(busy_repo))
    slow = await add_project(sessions, str(slow_repo))
    cluster.orchestrator()
    cluster.worker(concurrency=4)
    passing = await start_run(sessions, topics, busy)
    failing = await start_run(sessions, topics, busy, variables={"FAIL": "1"})
    cancelled = await start_run(sessions, topics, slow)
    await until(functools.partial(_stage_running, sessions, cancelled, "slow"), what="slow stage running")
    await request_cancel(sessions, topics, cancelled)
    statuses = [
        (await wait_for_run(sessions, r, timeout_s=120)).status for r in (passing, failing, cancelled)
    ]
    assert statuses == ["succeeded", "failed", "cancelled"], cluster.logs()
    env = process_env(cluster.common)

    for run_id in (passing, failing, cancelled):
        code, audit = await asyncio.to_thread(_audit, env, run_id)
        assert (code, audit["deterministic"]) == (0, True), json.dumps(audit, indent=1)
        inputs = [s for s in audit["steps"] if s["kind"] == "input"]
        assert all(s["same"] for s in inputs)
        assert inputs[0]["type"] == "run.requested"
    # The passing run: planned, every attempt's start and result (flaky's twice), in order.
    code, audit = await asyncio.to_thread(_audit, env, passing)
    kinds = [s["type"] for s in audit["steps"] if s["kind"] == "input"]
    assert kinds.count("attempt.finished") == 6
    retry = next(s for s in audit["steps"] if s["summary"].startswith("flaky#1 finished: failed"))
    assert "stage flaky: running → queued (attempt 2, exit 1): exit code 1" in retry["recorded"]["changes"]
    table = await asyncio.to_thread(_comet, env, "replay", "run", str(passing))
    assert table.returncode == 0
    assert "every decision as recorded" in table.stdout.strip().splitlines()[-1]

    # Rewrite history: the record now says flaky#1's failure failed the stage (no retry).
    async with sessions.begin() as session:
        await session.execute(
            text(
                "UPDATE outbox SET envelope = jsonb_set(jsonb_set(envelope, '{payload,status}', '\"failed\"'), "
                "'{payload,attempt}', '1') WHERE run_id = :r AND event_type = 'stage.status_changed' "
                "AND envelope->'payload'->>'stage' = 'flaky' AND envelope->'payload'->>'status' = 'queued' "
                "AND envelope->'payload'->>'attempt' = '2'"
            ),
            {"r": passing},
        )
    code, audit = await asyncio.to_thread(_audit, env, passing)
    assert code == 1
    assert audit["deterministic"] is False
    first = next(s for s in audit["steps"] if s["same"] is False)
    assert first["summary"].startswith("flaky#1 finished: failed")
    assert first["after_difference"] is False
    assert "stage flaky: running → queued (attempt 2, exit 1): exit code 1" in first["today"]["changes"]


async def test_an_unknown_run_is_one_line_and_a_non_zero_exit(common_env: dict[str, Any]) -> None:
    missing = uuid.uuid4()
    done = await asyncio.to_thread(_comet, process_env(common_env), "replay", "run", str(missing))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"comet: no run {missing}"]
    bad = await asyncio.to_thread(_comet, process_env(common_env), "replay", "run", "42")
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == ["comet: '42' is not a run id (a UUID)"]
