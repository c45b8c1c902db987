"""Which events are inputs to `decide()`, and the input each one is: one function, used by the
orchestrator shell (orchestrator/handlers.py) and by the audit of a run's history
(orchestrator/audit_trail.py), so the audit re-runs exactly what the shell ran."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from events.envelope import Envelope
from orchestrator.model import (
    Approved,
    AttemptFinishedInput,
    AttemptStartedInput,
    CancelRequested,
    DeploymentReviewedInput,
    DeploymentTimerInput,
    EnvironmentGranted,
    GroupReleased,
    Input,
    RetryRequested,
    TestOutcome,
)
from schemas.events import (
    AttemptFinished,
    AttemptStarted,
    DeploymentEnvironmentGranted,
    DeploymentReviewed,
    DeploymentTimerFired,
    RunCancelRequested,
    RunGroupReleased,
    RunRequested,
    StageApproved,
)

# Event types `input_of` turns into inputs (a `run.requested` becomes its plan, read by the shell).
INPUT_TYPES = frozenset(
    {
        RunRequested.TYPE,
        AttemptStarted.TYPE,
        AttemptFinished.TYPE,
        RunCancelRequested.TYPE,
        StageApproved.TYPE,
        RunGroupReleased.TYPE,
        "run.retry_requested",
        DeploymentReviewed.TYPE,
        DeploymentTimerFired.TYPE,
        DeploymentEnvironmentGranted.TYPE,
    }
)


def input_of(envelope: Envelope, planned: Mapping[uuid.UUID, Input]) -> tuple[uuid.UUID, Input] | None:
    """The run and the `decide()` input an event is; None for an event that is no input (or a
    `run.requested` whose plan is not in `planned`, keyed by event id)."""
    payload = envelope.typed()
    match payload:
        case RunRequested():
            plan = planned.get(envelope.event_id)
            return (payload.run_id, plan) if plan is not None else None
        case AttemptStarted():
            return payload.run_id, AttemptStartedInput(
                payload.stage, payload.number, payload.worker_id, started_at=payload.started_at
            )
        case AttemptFinished():
            return payload.run_id, AttemptFinishedInput(
                payload.stage,
                payload.number,
                payload.status,
                payload.exit_code,
                payload.failure_kind,
                payload.failure_reason,
                started_at=payload.started_at,
                finished_at=payload.finished_at,
                tests=None
                if payload.tests is None
                else TestOutcome(
                    failed=payload.tests.failed + payload.tests.errored,
                    quarantined=payload.tests.quarantined,
                    report_errors=payload.report_errors,
                ),
                line_rate=payload.line_rate,
            )
        case RunCancelRequested():
            return payload.run_id, CancelRequested(payload.reason)
        case StageApproved():
            return payload.run_id, Approved(payload.stage)
        case RunGroupReleased():
            return payload.run_id, GroupReleased()
        case DeploymentReviewed():
            return payload.run_id, DeploymentReviewedInput(
                payload.deployment_id,
                str(payload.user_id),
                payload.decision,
                payload.comment,
                payload.at,
                reviewer=payload.reviewer,
            )
        case DeploymentTimerFired():
            return payload.run_id, DeploymentTimerInput(payload.deployment_id, payload.at)
        case DeploymentEnvironmentGranted():
            return payload.run_id, EnvironmentGranted(payload.deployment_id)
        case _ if envelope.type == "run.retry_requested":
            return uuid.UUID(envelope.payload["run_id"]), RetryRequested()
    return None
