"""Reviews and rollbacks of deployments, recorded as events (decision 0027).

Checked here, under the run's row lock, against the deployment as the projection wrote it and the
reviews already recorded but not yet applied (so approving twice is refused even before the
orchestrator applied the first); `decide()` checks the same again when it applies them. Functions
never commit: the caller commits, then wakes the relay.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Deployment, OutboxEvent, Run
from db.repositories.errors import StateConflictError
from db.repositories.runs import create_run
from events.envelope import new_envelope
from events.outbox import PendingEvent, add_events
from events.topics import Topics
from orchestrator.deployments import self_approval_allowed
from schemas.deployments import DEPLOYMENT_TERMINAL
from schemas.events import DeploymentReviewed


class ReviewForbiddenError(Exception):
    """This person may not review this deployment (the message says why)."""


class RollbackRefusedError(Exception):
    """The deployment cannot be rolled back to (the message says why)."""


@dataclass(frozen=True, slots=True)
class ReviewRecorded:
    deployment_id: uuid.UUID
    run_id: uuid.UUID
    decision: str
    event_id: uuid.UUID


async def _pending_reviews(session: AsyncSession, deployment: Deployment) -> list[dict[str, Any]]:
    """Reviews of the deployment recorded in the run's history (applied or not yet)."""
    rows = await session.scalars(
        select(OutboxEvent.envelope).where(
            OutboxEvent.run_id == deployment.run_id,
            OutboxEvent.event_type == DeploymentReviewed.TYPE,
        )
    )
    return [
        e["payload"] for e in rows if str(e.get("payload", {}).get("deployment_id")) == str(deployment.id)
    ]


async def request_review(
    session: AsyncSession,
    topics: Topics,
    deployment_id: uuid.UUID,
    *,
    user_id: uuid.UUID,
    reviewer: str,
    decision: str,
    comment: str,
    correlation_id: str | None = None,
) -> ReviewRecorded:
    """Record a `deployment.reviewed`: LookupError (no such deployment), StateConflictError (it is
    not waiting for this review, or this person reviewed it already), ReviewForbiddenError (the
    person who triggered it, where its environment forbids self-approval)."""
    deployment = await session.get(Deployment, deployment_id)
    if deployment is None:
        raise LookupError(f"deployment {deployment_id} does not exist")
    # Under the run's lock: two reviews of one run are checked one after the other.
    await session.scalar(select(Run.id).where(Run.id == deployment.run_id).with_for_update())
    await session.refresh(deployment)
    verb = "approve" if decision == "approved" else "reject"
    if deployment.status in DEPLOYMENT_TERMINAL:
        raise StateConflictError(
            f"Deployment {deployment.id} has already finished ({deployment.status}); there is nothing to {verb}."
        )
    if deployment.status != "waiting":
        raise StateConflictError(
            f"Deployment {deployment.id} is already {deployment.status.replace('_', ' ')}; there is nothing to {verb}."
        )
    reviews = await _pending_reviews(session, deployment)
    if decision == "approved":
        # Applied (the row) and recorded but not yet applied (the history): one set of people.
        approvers = {
            str(r["user_id"]) for r in (*deployment.approvals, *reviews) if r.get("decision") == "approved"
        }
        if str(user_id) in approvers:
            raise StateConflictError(
                f"You already approved deployment {deployment.id}; approvals must come from distinct people."
            )
        if (
            not self_approval_allowed(deployment.allow_self_approval, deployment.required_approvals)
            and deployment.triggered_by == user_id
        ):
            raise ReviewForbiddenError(
                f"You triggered this run: a deployment to {deployment.environment} must be approved by someone else."
            )
        if len(approvers) >= deployment.required_approvals:
            reason = f" ({deployment.reason})" if deployment.reason else ""
            raise StateConflictError(f"Deployment {deployment.id} is not waiting for approvals{reason}.")
    payload = DeploymentReviewed(
        run_id=deployment.run_id,
        deployment_id=deployment.id,
        user_id=user_id,
        decision="approved" if decision == "approved" else "rejected",
        comment=comment,
        reviewer=reviewer,
        at=datetime.now(UTC),
    )
    envelope = new_envelope(payload, key=str(deployment.run_id), correlation_id=correlation_id)
    await add_events(session, [PendingEvent(topics.run_commands, envelope)])
    return ReviewRecorded(deployment.id, deployment.run_id, payload.decision, envelope.event_id)


async def request_rollback(
    session: AsyncSession,
    topics: Topics,
    project_id: uuid.UUID,
    environment: str,
    deployment_id: uuid.UUID,
    *,
    user_id: uuid.UUID,
    correlation_id: str | None = None,
) -> tuple[Run, Deployment]:
    """Start a run (trigger `rollback`) that deploys an earlier successful deployment's sha again
    by re-running its stage; RollbackRefusedError when the deployment is not one to go back to."""
    target = await session.get(Deployment, deployment_id)
    if target is None or target.project_id != project_id:
        raise RollbackRefusedError(f"No deployment {deployment_id} in this project.")
    if target.environment != environment:
        raise RollbackRefusedError(
            f"Deployment {deployment_id} deployed to {target.environment}, not {environment}."
        )
    if target.status != "succeeded":
        raise RollbackRefusedError(
            f"Deployment {deployment_id} {target.status.replace('_', ' ')}: only a successful deployment can be rolled back to."
        )
    if target.sha is None:
        raise RollbackRefusedError(f"Deployment {deployment_id} has no commit to deploy again.")
    run = await create_run(
        session,
        topics,
        project_id=project_id,
        ref=target.ref,
        sha=target.sha,
        trigger={
            "kind": "rollback",
            "event": "manual",
            "actor": str(user_id),
            "rollback_of": str(target.id),
            "environment": environment,
            "stages": [target.stage],
        },
        variables={},
        created_by=user_id,
        correlation_id=correlation_id,
    )
    return run, target
