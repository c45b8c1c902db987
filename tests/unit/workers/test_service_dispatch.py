"""The worker's Kafka dispatch path: it claims only what its sweep has not already taken."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, cast

import pytest

from config.settings import WorkerSettings
from events.consumer import Received
from events.envelope import new_envelope
from schemas.events import AttemptDispatched
from workers.runner import RunningAttempt
from workers.service import WorkerService


class _ClaimTried(Exception):
    """Raised by the fake sessions the moment a claim transaction would begin."""


class _Sessions:
    def __init__(self) -> None:
        self.begun = 0

    def begin(self) -> Any:
        self.begun += 1
        raise _ClaimTried


def _service(tmp_path: Path) -> tuple[WorkerService, _Sessions]:
    settings = WorkerSettings(
        database_url="postgresql+asyncpg://nobody:nothing@127.0.0.1:1/none",
        kafka_bootstrap_servers="127.0.0.1:1",
        workspace_dir=str(tmp_path / "ws"),
        git_cache_dir=str(tmp_path / "cache"),
    )
    service = WorkerService(settings, worker_id="w-test")
    sessions = _Sessions()
    service.backbone.sessions = cast(Any, sessions)
    return service, sessions


def _dispatch(attempt_id: uuid.UUID) -> Received:
    payload = AttemptDispatched(
        run_id=uuid.uuid4(),
        stage_id=uuid.uuid4(),
        attempt_id=attempt_id,
        stage="build",
        number=1,
        pool="default",
    )
    return Received(new_envelope(payload, key=str(payload.run_id)), "dispatch", 0, 0)


async def test_a_dispatch_of_an_attempt_this_worker_already_runs_opens_no_claim_transaction(
    tmp_path: Path,
) -> None:
    service, sessions = _service(tmp_path)
    attempt_id = uuid.uuid4()
    service.running[attempt_id] = cast(RunningAttempt, object())
    await service._on_dispatch([_dispatch(attempt_id)])
    assert sessions.begun == 0


async def test_a_dispatch_of_an_attempt_not_running_here_is_claimed(tmp_path: Path) -> None:
    service, sessions = _service(tmp_path)
    running = uuid.uuid4()
    service.running[running] = cast(RunningAttempt, object())
    with pytest.raises(_ClaimTried):
        await service._on_dispatch([_dispatch(running), _dispatch(uuid.uuid4())])
    assert sessions.begun == 1
