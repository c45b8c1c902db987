"""Requests about an existing run (cancel, retry), recorded as events in the outbox.

The orchestrator owns run state and applies these; here they are only checked against the run's
current status (under a row lock, so two requests see a consistent status) and recorded.
Functions never commit: the caller commits, then wakes the relay.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Run, Stage
from db.repositories.errors import StateConflictError
from events.envelope import new_envelope
from events.outbox import PendingEvent, add_events
from events.topics import Topics
from schemas.events import EventPayload, RunCancelRequested, RunRetryRequested, StageApproved
from schemas.states import RUN_TERMINAL, RunStatus, StageStatus

RETRYABLE = frozenset({RunStatus.FAILED, RunStatus.CANCELLED})


@dataclass(frozen=True, slots=True)
class Recorded:
    run_id: uuid.UUID
    status: RunStatus
    event_id: uuid.UUID


async def _locked_run(session: AsyncSession, run_id: uuid.UUID) -> Run:
    run = (await session.scalars(select(Run).where(Run.id == run_id).with_for_update())).one_or_none()
    if run is None:
        raise LookupError(f"run {run_id} does not exist")
    return run


async def _record(
    session: AsyncSession, topics: Topics, run: Run, payload: EventPayload, correlation_id: str | None
) -> Recorded:
    envelope = new_envelope(payload, key=str(run.id), correlation_id=correlation_id)
    await add_events(session, [PendingEvent(topics.run_commands, envelope)])
    return Recorded(run.id, RunStatus(run.status), envelope.event_id)


async def request_cancel(
    session: AsyncSession,
    topics: Topics,
    run_id: uuid.UUID,
    *,
    actor_id: uuid.UUID | None,
    reason: str = "cancelled by a user",
    correlation_id: str | None = None,
) -> Recorded:
    """Record a `run.cancel_requested`; StateConflictError when the run has finished already."""
    run = await _locked_run(session, run_id)
    if RunStatus(run.status) in RUN_TERMINAL:
        raise StateConflictError(f"The run has already finished ({run.status}); there is nothing to cancel.")
    payload = RunCancelRequested(run_id=run.id, source="user", reason=reason, actor_id=actor_id)
    return await _record(session, topics, run, payload, correlation_id)


async def request_retry(
    session: AsyncSession,
    topics: Topics,
    run_id: uuid.UUID,
    *,
    actor_id: uuid.UUID | None,
    correlation_id: str | None = None,
) -> Recorded:
    """Record a `run.retry_requested` for a failed or cancelled run that was planned."""
    run = await _locked_run(session, run_id)
    if RunStatus(run.status) not in RETRYABLE:
        raise StateConflictError(f"Only a failed or cancelled run can be retried; this one is {run.status}.")
    planned = await session.scalar(select(exists().where(Stage.run_id == run.id)))
    if not planned:
        raise StateConflictError(
            "The run was never planned, so it has no stages to re-run; trigger a new run."
        )
    payload = RunRetryRequested(run_id=run.id, actor_id=actor_id)
    return await _record(session, topics, run, payload, correlation_id)


async def request_approval(
    session: AsyncSession,
    topics: Topics,
    run_id: uuid.UUID,
    stage: str,
    *,
    actor_id: uuid.UUID | None,
    correlation_id: str | None = None,
) -> Recorded:
    """Record a `stage.approved` for a stage waiting at its approval gate; StateConflictError
    (or LookupError for an unknown stage) otherwise."""
    run = await _locked_run(session, run_id)
    status = await session.scalar(select(Stage.status).where(Stage.run_id == run.id, Stage.name == stage))
    if status is None:
        raise LookupError(f"run {run_id} has no stage {stage}")
    if status != StageStatus.WAITING_APPROVAL.value:
        raise StateConflictError(f"Stage {stage} is not waiting for approval (it is {status}).")
    payload = StageApproved(run_id=run.id, stage=stage, actor_id=actor_id)
    return await _record(session, topics, run, payload, correlation_id)
