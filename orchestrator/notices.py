"""Which notifications an event of the run's history gives (pure): what the notifier reacts to.

- `run.status_changed` to a final status → `run.finished` (and first `run.failed` when it failed);
- `stage.status_changed` to `waiting_approval` → `approval.requested` (with the deployment when
  the stage has an `environment`);
- `stage.status_changed` of a stage with an `environment` → `deployment.started` when it starts
  running, `deployment.finished` when it ends (succeeded, failed — a rejection fails it —, or
  cancelled), carrying its Deployment row's fields when there is one;
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

from schemas.events import RunStatusChanged, StageStatusChanged
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


def deployment_of(
    run: RunFacts, stage: StageFacts, row: dict[str, Any] | None, public_url: str
) -> DeploymentNotice | None:
    """The deployment a stage makes: its Deployment row's fields (`row`, as a dict of the row's
    columns) over what the stage itself says; None when the stage has no environment."""
    environment = (row or {}).get("environment") or stage.environment
    if not environment:
        return None
    found = row or {}
    return DeploymentNotice(
        id=found.get("id"),
        environment=str(environment),
        status=str(found.get("status") or stage.status),
        sha=found.get("sha") or run.sha,
        ref=str(found.get("ref") or run.ref),
        run_id=run.id,
        stage=stage.name,
        url=found.get("url"),
        rollback_of=found.get("rollback_of") or found.get("rollback_of_id"),
        triggered_by=found.get("triggered_by") or found.get("triggered_by_id"),
        approvals=[ApprovalOut.model_validate(a) for a in found.get("approvals") or []],
        created_at=found.get("created_at") or stage.queued_at,
        started_at=found.get("started_at") or stage.started_at,
        finished_at=found.get("finished_at") or stage.finished_at,
        run_url=run_url(public_url, run.id),
    )


def for_stage_status(
    event_id: uuid.UUID,
    change: StageStatusChanged,
    run: RunFacts,
    stage: StageFacts,
    deployment_row: dict[str, Any] | None,
    public_url: str,
) -> list[Notice]:
    deployment = deployment_of(run, stage, deployment_row, public_url)
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
        if deployment_row is None:  # no row to say otherwise: the stage's own outcome
            deployment = deployment.model_copy(update={"status": change.status})
        events, data = ("deployment.finished",), deployment
    else:
        return []
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
