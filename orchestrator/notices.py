"""Which notifications an event of the run's history gives (pure): what the notifier reacts to.

- `run.status_changed` to a final status → `run.finished` (and first `run.failed` when it failed);
- `deployment.status_changed` (decision 0027) → `deployment.started` when it goes `in_progress`,
  `deployment.finished` when it ends (succeeded, failed, cancelled or rejected), and
  `approval.requested` when it starts waiting while it needs more approvals than it has;
- `stage.status_changed` of a stage that has no Deployment row (a plain `approval: true` gate, or
  an `environment` stage of a history from before deployments were recorded) → `approval.requested`
  when it waits for approval, `deployment.started` / `deployment.finished` from the stage's own
  status when it has an `environment`; a stage with Deployment rows leaves that to their events,
  so nothing is announced twice;
- `attempt.finished` with flaky cases → one `test.flaky` per test never announced before.

Everything the builders need comes in as arguments (rows already loaded by the shell, the
public URL); nothing here reads a clock or a database.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from schemas.events import DeploymentStatusChanged, RunStatusChanged, StageStatusChanged
from schemas.notifications import (
    ApprovalOut,
    ApprovalRequestedNotice,
    DeploymentNotice,
    FlakyTestNotice,
    Notice,
    RunNotice,
)

FINAL_RUN = frozenset({"succeeded", "failed", "cancelled"})
FINAL_DEPLOYING_STAGE = frozenset({"succeeded", "failed", "cancelled"})
FINAL_DEPLOYMENT = frozenset({"succeeded", "failed", "cancelled", "rejected"})


@dataclass(frozen=True, slots=True)
class RunFacts:
    id: uuid.UUID
    project_id: uuid.UUID
    project: str
    ref: str
    sha: str | None
    pipeline: str | None
    trigger: str
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class StageFacts:
    name: str
    environment: str | None
    status: str
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class CaseFacts:
    key: str
    name: str
    classname: str
    file: str | None
    stage: str


def run_url(public_url: str, run_id: uuid.UUID) -> str:
    return f"{public_url.rstrip('/')}/api/v1/runs/{run_id}"


def for_run_status(
    event_id: uuid.UUID, change: RunStatusChanged, run: RunFacts, public_url: str
) -> list[Notice]:
    if change.status not in FINAL_RUN:
        return []
    data = RunNotice(
        run_id=run.id,
        status=change.status,
        previous=change.previous,
        ref=run.ref,
        sha=run.sha,
        pipeline=run.pipeline,
        trigger=run.trigger,
        failure_reason=change.failure_reason,
        created_at=run.created_at,
        finished_at=run.finished_at or change.at,
        url=run_url(public_url, run.id),
    )
    events = ("run.failed", "run.finished") if change.status == "failed" else ("run.finished",)
    return [
        Notice(
            events=events,
            event_id=event_id,
            occurred_at=change.at,
            project_id=run.project_id,
            project=run.project,
            data=data,
        )
    ]


def stage_deployment(run: RunFacts, stage: StageFacts, public_url: str) -> DeploymentNotice | None:
    """The deployment a stage without Deployment rows makes, from the stage alone; None when it
    has no environment."""
    if not stage.environment:
        return None
    return DeploymentNotice(
        environment=stage.environment,
        status=stage.status,
        sha=run.sha,
        ref=run.ref,
        run_id=run.id,
        stage=stage.name,
        created_at=stage.queued_at,
        started_at=stage.started_at,
        finished_at=stage.finished_at,
        run_url=run_url(public_url, run.id),
    )


def for_stage_status(
    event_id: uuid.UUID,
    change: StageStatusChanged,
    run: RunFacts,
    stage: StageFacts,
    has_deployments: bool,
    public_url: str,
) -> list[Notice]:
    if has_deployments:
        return []  # its deployment.status_changed events say it
    deployment = stage_deployment(run, stage, public_url)
    if change.status == "waiting_approval":
        events: tuple[Any, ...] = ("approval.requested",)
        data: Any = ApprovalRequestedNotice(
            run_id=run.id,
            stage=stage.name,
            ref=run.ref,
            sha=run.sha,
            environment=deployment.environment if deployment else None,
            deployment=deployment,
            run_url=run_url(public_url, run.id),
        )
    elif deployment is None:
        return []
    elif change.status == "running":
        events, data = ("deployment.started",), deployment
    elif change.status in FINAL_DEPLOYING_STAGE:
        events, data = ("deployment.finished",), deployment.model_copy(update={"status": change.status})
    else:
        return []
    return [_notice(events, event_id, change.at, run, data)]


def for_deployment_status(
    event_id: uuid.UUID,
    change: DeploymentStatusChanged,
    run: RunFacts,
    required_approvals: int,
    created_at: datetime | None,
    public_url: str,
) -> list[Notice]:
    """`required_approvals` and `created_at` come from the deployment's row (0 / None without)."""
    deployment = DeploymentNotice(
        id=change.deployment_id,
        environment=change.environment,
        status=change.status,
        sha=change.sha or run.sha,
        ref=change.ref or run.ref,
        run_id=run.id,
        stage=change.stage,
        url=change.url,
        rollback_of=change.rollback_of,
        triggered_by=change.triggered_by,
        approvals=[ApprovalOut.model_validate(a) for a in change.approvals],
        created_at=created_at,
        started_at=change.started_at,
        finished_at=change.finished_at,
        run_url=run_url(public_url, run.id),
    )
    approved = {a.user_id for a in deployment.approvals if a.decision == "approved"}
    if change.status == "in_progress" and change.previous != "in_progress":
        return [_notice(("deployment.started",), event_id, change.at, run, deployment)]
    if change.status in FINAL_DEPLOYMENT and change.previous not in FINAL_DEPLOYMENT:
        return [_notice(("deployment.finished",), event_id, change.at, run, deployment)]
    if change.status == "waiting" and change.previous != "waiting" and len(approved) < required_approvals:
        data = ApprovalRequestedNotice(
            run_id=run.id,
            stage=change.stage,
            ref=deployment.ref,
            sha=deployment.sha,
            environment=change.environment,
            deployment=deployment,
            run_url=deployment.run_url,
        )
        return [_notice(("approval.requested",), event_id, change.at, run, data)]
    return []


def _notice(events: tuple[Any, ...], event_id: uuid.UUID, at: datetime, run: RunFacts, data: Any) -> Notice:
    return Notice(
        events=events,
        event_id=event_id,
        occurred_at=at,
        project_id=run.project_id,
        project=run.project,
        data=data,
    )


def for_flaky_cases(
    event_id: uuid.UUID, at: datetime, run: RunFacts, cases: Sequence[CaseFacts], public_url: str
) -> list[Notice]:
    return [
        Notice(
            events=("test.flaky",),
            event_id=event_id,
            occurred_at=at,
            project_id=run.project_id,
            project=run.project,
            data=FlakyTestNotice(
                key=c.key,
                name=c.name,
                classname=c.classname,
                file=c.file,
                run_id=run.id,
                stage=c.stage,
                ref=run.ref,
                sha=run.sha,
                run_url=run_url(public_url, run.id),
            ),
        )
        for c in cases
    ]
