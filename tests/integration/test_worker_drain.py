"""A worker told to stop while a claim is in flight runs what that claim took before it stops.

Found by the elastic scaling test: a SIGTERM landing while the worker's claim transaction was
committing left an attempt claimed by a worker that then exited without starting it, so the
stage failed as `lost_worker` once its lease expired.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from config.settings import WorkerSettings
from db.repositories import attempts as attempts_repo
from db.repositories.attempts import Claim
from events.envelope import Envelope
from tests.integration.conftest import TEST_SECRET_KEY
from tests.unit.workers.claims import a_claim
from workers.runner import RunningAttempt
from workers.service import WorkerService


def _claim() -> Claim:
    return a_claim(pool="drain-test")


@pytest.mark.timeout(60)
async def test_a_drain_waits_for_the_claim_in_flight_and_runs_what_it_claimed(
    common_env: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = WorkerService(
        WorkerSettings(
            **common_env,
            pool="drain-test",
            concurrency=2,
            workspace_dir=str(tmp_path / "ws"),
            git_cache_dir=str(tmp_path / "git"),
            secret_key=TEST_SECRET_KEY,
        ),
        worker_id="drain-test-worker",
    )
    claim = _claim()
    claiming = asyncio.Event()
    committed = asyncio.Event()
    ran: list[uuid.UUID] = []

    async def slow_claim(*_: Any, **__: Any) -> list[Claim]:
        claiming.set()
        await committed.wait()  # the transaction commits only after the stop arrived
        return [claim]

    async def no_start_events(
        _: AsyncSession, claims: list[Claim], __: dict[uuid.UUID, Envelope]
    ) -> list[RunningAttempt]:
        return [RunningAttempt(c) for c in claims]

    async def run_stage(attempt: RunningAttempt) -> None:
        await asyncio.sleep(0.2)
        ran.append(attempt.claim.attempt_id)

    monkeypatch.setattr(attempts_repo, "claim_stale", slow_claim)
    monkeypatch.setattr(worker, "_record_starts", no_start_events)
    monkeypatch.setattr(worker.runner, "run", run_stage)

    sweeping = asyncio.create_task(worker._claim_queued())
    try:
        worker._work_waiting.set()
        await asyncio.wait_for(claiming.wait(), 10)
        draining = asyncio.create_task(worker.drain())
        await asyncio.sleep(0.1)
        assert not draining.done(), "the drain ended while a claim was still committing"
        committed.set()
        await asyncio.wait_for(draining, 10)
    finally:
        sweeping.cancel()
        await asyncio.gather(sweeping, return_exceptions=True)
        await worker.backbone.stop()

    assert ran == [claim.attempt_id]
    assert worker.running == {}
