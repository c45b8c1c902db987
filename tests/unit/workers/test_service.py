"""The worker service's own decisions: which dispatches it claims, when it sweeps the queue, and
which missing leases it takes for lost."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from config.settings import WorkerSettings
from db.repositories import attempts as attempts_repo
from db.repositories import workers as workers_repo
from db.repositories.attempts import Claim
from events.consumer import Received
from events.envelope import new_envelope
from schemas.events import AttemptDispatched
from tests.unit.workers.claims import a_claim
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


class _QuietSessions:
    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[None]:
        yield None


def _running(tmp_path: Path) -> RunningAttempt:
    return RunningAttempt(a_claim(repo_url=str(tmp_path)))


async def _heartbeat_finding_no_lease(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, attempt: RunningAttempt
) -> None:
    service, _ = _service(tmp_path)
    service.backbone.sessions = cast(Any, _QuietSessions())

    async def no_lease_held(*_: object, **__: object) -> dict[uuid.UUID, attempts_repo.HeldLease]:
        return {}

    async def beat(*_: object, **__: object) -> None:
        return None

    monkeypatch.setattr(attempts_repo, "heartbeat", no_lease_held)
    monkeypatch.setattr(workers_repo, "beat", beat)
    service.running[attempt.claim.attempt_id] = attempt
    await service.heartbeat_once()


async def test_a_running_stage_whose_lease_is_gone_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempt = _running(tmp_path)
    await _heartbeat_finding_no_lease(tmp_path, monkeypatch, attempt)
    assert attempt.lease_lost
    assert attempt.cancel.is_set()


async def test_a_stage_whose_result_is_being_reported_is_not_taken_for_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempt = _running(tmp_path)
    attempt.finishing = True
    await _heartbeat_finding_no_lease(tmp_path, monkeypatch, attempt)
    assert not attempt.lease_lost
    assert not attempt.cancel.is_set()


def test_a_freed_slot_sweeps_only_while_work_may_be_waiting(tmp_path: Path) -> None:
    service, _ = _service(tmp_path)
    service._backlog = False
    service._slot_freed()
    assert not service._work_waiting.is_set()
    service._backlog = True
    service._slot_freed()
    assert service._work_waiting.is_set()


async def test_a_dispatch_with_no_free_slot_opens_no_transaction_and_leaves_a_backlog(tmp_path: Path) -> None:
    service, sessions = _service(tmp_path)
    service._backlog = False
    for _ in range(service.settings.concurrency):
        service.running[uuid.uuid4()] = _running(tmp_path)
    await service._on_dispatch([_dispatch(uuid.uuid4())])
    assert sessions.begun == 0
    assert service._backlog


async def _sweep_finding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, queued: int, *, busy: int | None = 0
) -> tuple[WorkerService, list[int]]:
    """One sweep by a worker with `busy` of its slots taken (None: all), when `queued` attempts
    wait for it; also the limits the sweep asked Postgres for."""
    service, _ = _service(tmp_path)
    service.backbone.sessions = cast(Any, _QuietSessions())
    service._backlog = not service._backlog  # whatever it was, the sweep decides
    for _ in range(service.settings.concurrency if busy is None else busy):
        service.running[uuid.uuid4()] = _running(tmp_path)
    asked: list[int] = []

    async def claim_stale(*_: object, limit: int, **__: object) -> list[Claim]:
        asked.append(limit)
        return [a_claim() for _ in range(min(queued, limit))]

    async def record_starts(_: object, claims: list[Claim], __: object) -> list[RunningAttempt]:
        return [RunningAttempt(c) for c in claims]

    monkeypatch.setattr(attempts_repo, "claim_stale", claim_stale)
    monkeypatch.setattr(service, "_record_starts", record_starts)
    monkeypatch.setattr(service, "_start", lambda attempts: None)
    await service._sweep_once()
    return service, asked


async def test_a_sweep_that_fills_every_free_slot_expects_more_work_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service, asked = await _sweep_finding(tmp_path, monkeypatch, queued=10, busy=1)
    assert asked == [service.settings.concurrency - 1]
    assert service._backlog


async def test_a_sweep_that_finds_fewer_than_its_free_slots_expects_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service, asked = await _sweep_finding(tmp_path, monkeypatch, queued=1)
    assert asked == [service.settings.concurrency]
    assert not service._backlog


async def test_a_sweep_with_no_free_slot_asks_postgres_nothing_and_expects_work_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service, asked = await _sweep_finding(tmp_path, monkeypatch, queued=3, busy=None)
    assert asked == []
    assert service._backlog
