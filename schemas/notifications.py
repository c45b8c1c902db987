"""Outbound notifications: the event names an integration can subscribe to, and the payload each
one carries (docs/decisions/0024).

A notification is `{"event", "event_id", "occurred_at", "project_id", "project", "data"}`; `data` is one
of the models below. `event_id` names the Comet event the notification came from (the same for
every integration it went to); each delivery has its own id (`X-Comet-Delivery`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

NotificationEvent = Literal[
    "run.finished",
    "run.failed",
    "deployment.started",
    "deployment.finished",
    "approval.requested",
    "test.flaky",
]
NOTIFICATION_EVENTS: tuple[NotificationEvent, ...] = (
    "run.finished",
    "run.failed",
    "deployment.started",
    "deployment.finished",
    "approval.requested",
    "test.flaky",
)


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True)


class RunNotice(_Data):
    """`run.finished` (the run ended: succeeded, failed or cancelled) and `run.failed`."""

    run_id: uuid.UUID
    status: str
    previous: str | None = None
    ref: str
    sha: str | None = None
    pipeline: str | None = None
    trigger: str
    failure_reason: str | None = None
    created_at: datetime
    finished_at: datetime | None = None
    url: str = Field(description="The run in the API.")


class ApprovalOut(_Data):
    user_id: uuid.UUID | None = None
    decision: str
    comment: str | None = None
    at: datetime | None = None


class DeploymentNotice(_Data):
    """`deployment.started` / `deployment.finished`: CONTRACT §4's deployment fields. `id` is
    null for a stage with `environment` whose Deployment row does not exist (yet)."""

    id: uuid.UUID | None = None
    environment: str
    status: str
    sha: str | None = None
    ref: str
    run_id: uuid.UUID
    stage: str
    url: str | None = Field(default=None, description="Where the deployed thing is reachable, if known.")
    rollback_of: uuid.UUID | None = None
    triggered_by: uuid.UUID | None = None
    approvals: list[ApprovalOut] = []
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    run_url: str


class ApprovalRequestedNotice(_Data):
    """`approval.requested`: a gated stage waits for people; `deployment` when it deploys."""

    run_id: uuid.UUID
    stage: str
    ref: str
    sha: str | None = None
    environment: str | None = None
    deployment: DeploymentNotice | None = None
    run_url: str


class FlakyTestNotice(_Data):
    """`test.flaky`: a test found flaky for the first time in the project."""

    key: str
    name: str
    classname: str
    file: str | None = None
    run_id: uuid.UUID
    stage: str
    ref: str
    sha: str | None = None
    run_url: str


NoticeData = RunNotice | DeploymentNotice | ApprovalRequestedNotice | FlakyTestNotice


class Notice(BaseModel):
    """One notification, before it is addressed to an integration. `events` is what it matches,
    most specific first: a failed run is `["run.failed", "run.finished"]`, and an integration
    gets it once, as the first of these its filter names."""

    model_config = ConfigDict(frozen=True)
    events: tuple[NotificationEvent, ...]
    event_id: uuid.UUID
    occurred_at: datetime
    project_id: uuid.UUID
    project: str = Field(description="The project's name.")
    data: NoticeData

    def for_filter(self, wanted: list[str]) -> NotificationEvent | None:
        """The event name this notice is sent as to an integration that wants `wanted`, or None."""
        return next((e for e in self.events if e in wanted), None)
