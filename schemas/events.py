"""Payloads of every event type, registered by name. The envelope is in `events/envelope.py`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict


class EventPayload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1

    @classmethod
    def event_type(cls) -> str:
        return cls.TYPE

    @classmethod
    def schema_version(cls) -> int:
        return cls.VERSION


class RunRequested(EventPayload):
    """A run was created (by the API, a webhook or a schedule) and waits to be planned."""

    TYPE = "run.requested"
    run_id: uuid.UUID
    project_id: uuid.UUID
    number: int
    ref: str
    sha: str | None = None
    variables: dict[str, str] = {}
    trigger: dict[str, Any] = {}
    # Who asked for it (the row's `created_by`; None for webhooks and schedules).
    created_by: uuid.UUID | None = None


CancelSource = Literal["user", "concurrency_group"]


class RunCancelRequested(EventPayload):
    """Version 2 added `source` (version 1 said who cancelled only in the prose of `reason`;
    its upcaster is events/upcasters/run_cancel_requested.py)."""

    TYPE = "run.cancel_requested"
    VERSION = 2
    run_id: uuid.UUID
    source: CancelSource
    reason: str = "cancelled by a user"
    actor_id: uuid.UUID | None = None


class RunRetryRequested(EventPayload):
    TYPE = "run.retry_requested"
    run_id: uuid.UUID
    actor_id: uuid.UUID | None = None


class RunGroupReleased(EventPayload):
    """The run waited for its concurrency group, which has no active run any more."""

    TYPE = "run.group_released"
    run_id: uuid.UUID
    group: str


class StageApproved(EventPayload):
    TYPE = "stage.approved"
    run_id: uuid.UUID
    stage: str
    actor_id: uuid.UUID | None = None


class WebhookReceived(EventPayload):
    """A verified, stored webhook delivery; the orchestrator turns it into runs.

    Version 2 carries what the delivery's row holds (id, event, action, kept headers, the body as
    base64, when it was received) when the API first records it, so a database restored from a
    backup can recover the deliveries acknowledged after the backup from the log alone
    (docs/decisions/0020). A body over `WEBHOOK_BODY_IN_EVENT_MAX` bytes is left out (`body`
    None) to keep the event under Kafka's message size; re-drives leave all of them out."""

    TYPE = "webhook.received"
    VERSION = 2
    delivery_row_id: uuid.UUID
    provider: str
    project_id: uuid.UUID
    forced: bool = False
    delivery_id: str | None = None
    event: str | None = None
    action: str | None = None
    headers: dict[str, Any] = {}
    body: str | None = None  # base64 of the raw body
    received_at: datetime | None = None
    # Set by `comet replay webhooks` / `POST …/webhooks/replay`: the runs' trigger says `replay`.
    replay_id: uuid.UUID | None = None


WEBHOOK_BODY_IN_EVENT_MAX = 512 * 1024


class AttemptDispatched(EventPayload):
    """An attempt is queued for a worker of `pool`."""

    TYPE = "attempt.dispatched"
    run_id: uuid.UUID
    stage_id: uuid.UUID
    attempt_id: uuid.UUID
    stage: str
    number: int
    pool: str


class AttemptStarted(EventPayload):
    TYPE = "attempt.started"
    run_id: uuid.UUID
    stage_id: uuid.UUID
    attempt_id: uuid.UUID
    stage: str
    number: int
    worker_id: str
    fencing_token: int
    started_at: datetime


class TestCounts(BaseModel):
    """What an attempt's test reports said; `quarantined` counts the failed or errored cases of
    quarantined tests, `flaky` the cases found flaky. Stored as `stage_attempts.test_summary`."""

    __test__ = False  # not a pytest class
    model_config = ConfigDict(frozen=True)
    total: int = 0
    passed: int = 0
    failed: int = 0
    errored: int = 0
    skipped: int = 0
    flaky: int = 0
    quarantined: int = 0
    duration_s: float = 0.0


class AttemptFinished(EventPayload):
    """An attempt ended: its worker reported it, or the lease reaper found it lost."""

    TYPE = "attempt.finished"
    run_id: uuid.UUID
    stage_id: uuid.UUID
    attempt_id: uuid.UUID
    stage: str
    number: int
    status: str
    exit_code: int | None = None
    failure_kind: str | None = None
    failure_reason: str | None = None
    worker_id: str | None = None
    # When the attempt started on its worker (None if it never did): lets a result that overtook
    # its `attempt.started` event stand in for it.
    started_at: datetime | None = None
    finished_at: datetime
    # With `reports:`: the test counts (None when no JUnit report was asked for), how many report
    # files could not be read, and the line/branch coverage (fractions; None: not measured).
    tests: TestCounts | None = None
    report_errors: int = 0
    line_rate: float | None = None
    branch_rate: float | None = None
    # The token the result was committed under (its worker's claim; None: the lease reaper) and
    # the unreadable report files ([{file, reason}]): the projection writes both (decision 0021).
    fencing_token: int | None = None
    report_problems: list[dict[str, str]] = []


class RunStatusChanged(EventPayload):
    TYPE = "run.status_changed"
    run_id: uuid.UUID
    project_id: uuid.UUID
    status: str
    previous: str | None = None
    failure_reason: str | None = None
    at: datetime


class StageStatusChanged(EventPayload):
    TYPE = "stage.status_changed"
    run_id: uuid.UUID
    stage: str
    status: str
    previous: str | None = None
    attempt: int = 0
    exit_code: int | None = None
    failure_reason: str | None = None
    at: datetime


DeploymentStatus = Literal["waiting", "queued", "in_progress", "succeeded", "failed", "cancelled", "rejected"]


class DeploymentStatusChanged(EventPayload):
    """A deployment was created (`previous` None) or changed status (decision 0027). Emitted by the
    orchestrator into the run's history (key: the run id, on the run-status topic) for every change;
    the projection (`db/projection.py`) writes the `deployments` row from it alone. `reason` says
    why it waits (approvals, another deployment, a wait timer) or why it failed / was rejected;
    `approvals` is the deployment's whole list of reviews so far ([{user_id, decision, comment,
    at}]); `requested_at`, `started_at`, `finished_at` are the row's timings."""

    TYPE = "deployment.status_changed"
    deployment_id: uuid.UUID
    project_id: uuid.UUID
    run_id: uuid.UUID
    stage: str
    environment: str
    status: DeploymentStatus
    previous: DeploymentStatus | None = None
    sha: str | None = None
    ref: str | None = None
    url: str | None = None
    rollback_of: uuid.UUID | None = None
    triggered_by: uuid.UUID | None = None
    at: datetime
    reason: str | None = None
    approvals: list[dict[str, Any]] = []
    started_at: datetime | None = None
    finished_at: datetime | None = None


ReviewDecision = Literal["approved", "rejected"]


class DeploymentReviewed(EventPayload):
    """Someone approved or rejected a deployment waiting at its gate (an input to `decide()`,
    recorded by `POST /deployments/{id}/approve|reject` and by the stage-approval route)."""

    TYPE = "deployment.reviewed"
    run_id: uuid.UUID
    deployment_id: uuid.UUID
    user_id: uuid.UUID
    decision: ReviewDecision
    comment: str = ""
    # Who, as people read it (the reviewer's email), for the reason a rejection fails the stage with.
    reviewer: str = ""
    at: datetime


class DeploymentTimerFired(EventPayload):
    """A deployment's wait timer or approval deadline passed (the orchestrator's deployment timer
    records it; `decide()` reads the time from `at`, never from a clock)."""

    TYPE = "deployment.timer_fired"
    run_id: uuid.UUID
    deployment_id: uuid.UUID
    at: datetime


class DeploymentEnvironmentGranted(EventPayload):
    """The deployment's environment is free and it is next in line: it may deploy now (decided
    by the orchestrator shell under the environment's lock, applied in the same transaction)."""

    TYPE = "deployment.environment_granted"
    run_id: uuid.UUID
    deployment_id: uuid.UUID
    environment: str


class RunChanged(EventPayload):
    """The rows one orchestrator transaction changed for a run, as `decide()` left them: the run's
    changed columns, the stages it planned (whole rows, with their ids), the changed columns of
    other stages (by stage id), the attempts it queued, and the attempts it cancelled (queued ones)
    or asked to stop (running ones). Values are column values as JSON. The one projection
    (`db/projection.py`) writes exactly this, live and when rebuilding (decision 0021)."""

    TYPE = "run.changed"
    run_id: uuid.UUID
    at: datetime
    run: dict[str, Any] = {}
    new_stages: list[dict[str, Any]] = []
    stages: dict[str, dict[str, Any]] = {}
    new_attempts: list[dict[str, Any]] = []
    cancelled_attempts: list[uuid.UUID] = []
    stopping_attempts: list[uuid.UUID] = []
    cancel_reason: str | None = None
    # Deployments (decision 0027): new rows (whole) and other deployments' changed columns (by id).
    new_deployments: list[dict[str, Any]] = []
    deployments: dict[str, dict[str, Any]] = {}
    # The run's n-th `run.changed` (decision 0030): a reader of the topic, where a run's events can
    # arrive out of order or twice, applies them in this order. None in events written before it.
    revision: int | None = None


class DeadLettered(EventPayload):
    """A message set aside with the reason: undecodable, or a poison event its handler kept failing
    on (`kind` says which; for the latter, the event and its run are named)."""

    TYPE = "dead_letter"
    consumer: str
    topic: str
    partition: int
    offset: int
    reason: str
    key: str | None = None
    value: str | None = None
    kind: str = "undecodable"
    original_event_id: uuid.UUID | None = None
    original_type: str | None = None
    run_id: uuid.UUID | None = None


class RunNote(EventPayload):
    """An input the orchestrator did not apply to a run, and why (kept in the run's history only;
    never published: `decide()` derives it again from the same inputs)."""

    TYPE = "run.note"
    run_id: uuid.UUID
    note: str
    cause_event_id: uuid.UUID | None = None
    cause_type: str | None = None


EVENT_MODELS: dict[str, type[EventPayload]] = {
    model.TYPE: model
    for model in (
        RunRequested,
        RunCancelRequested,
        RunRetryRequested,
        RunGroupReleased,
        StageApproved,
        WebhookReceived,
        AttemptDispatched,
        AttemptStarted,
        AttemptFinished,
        RunStatusChanged,
        StageStatusChanged,
        DeploymentStatusChanged,
        DeploymentReviewed,
        DeploymentTimerFired,
        DeploymentEnvironmentGranted,
        RunChanged,
        DeadLettered,
        RunNote,
    )
}
