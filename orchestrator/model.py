"""What `decide()` reads and returns: the run's state, the inputs that change it, and the
commands the shell carries out. Plain frozen dataclasses: no I/O, no ORM."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.states import RunStatus, StageStatus


@dataclass(frozen=True, slots=True)
class StageState:
    name: str
    status: StageStatus
    needs: tuple[str, ...] = ()
    pool: str = "default"
    spec: dict[str, Any] = field(default_factory=dict)
    attempt: int = 0
    position: int = 0
    exit_code: int | None = None
    failure_kind: str | None = None
    failure_reason: str | None = None
    note: str | None = None
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    base_name: str = ""
    matrix: dict[str, str] = field(default_factory=dict)

    @property
    def allow_failure(self) -> bool:
        return bool(self.spec.get("allow_failure"))

    @property
    def retry_count(self) -> int:
        return int(self.spec.get("retry", {}).get("count", 0))

    @property
    def retry_backoff_s(self) -> float:
        return float(self.spec.get("retry", {}).get("backoff_s", 0.0))

    @property
    def coverage_min(self) -> float | None:
        value = self.spec.get("coverage_min")
        return None if value is None else float(value)

    @property
    def retry_when(self) -> tuple[str, ...]:
        return tuple(self.spec.get("retry", {}).get("when", ("script_failure", "lost_worker", "timeout")))


@dataclass(frozen=True, slots=True)
class Review:
    """One approval or rejection of a deployment."""

    user_id: str
    decision: str  # approved | rejected
    comment: str
    at: datetime

    def row(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "decision": self.decision, "comment": self.comment, "at": self.at}


@dataclass(frozen=True, slots=True)
class DeploymentState:
    """A stage's deployment to its environment (decision 0027; the pure rules are in
    `orchestrator/deployments.py`). Its id is derived from the run, stage and number, so the
    audit of a run's history re-derives the same ids."""

    id: uuid.UUID
    stage: str
    number: int
    environment: str
    status: str
    ref: str
    sha: str | None = None
    url: str | None = None
    reason: str | None = None
    rollback_of: uuid.UUID | None = None
    triggered_by: uuid.UUID | None = None
    approvals: tuple[Review, ...] = ()
    required_approvals: int = 0
    allow_self_approval: bool = True
    ready_at: datetime | None = None
    wait_until: datetime | None = None
    expires_at: datetime | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RunState:
    id: uuid.UUID
    project_id: uuid.UUID
    status: RunStatus
    ref: str
    sha: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    trigger: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, StageState] = field(default_factory=dict)
    failure_reason: str | None = None
    pipeline_name: str | None = None
    concurrency_group: str | None = None
    retries: int = 0
    cancel_requested_at: datetime | None = None
    # Held back by its concurrency group: planned, but nothing dispatched until released.
    waiting_for_group: bool = False
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # Who asked for the run (None for webhooks and schedules): a deployment's `triggered_by`.
    created_by: uuid.UUID | None = None
    # Each deploying stage's latest deployment, by stage name.
    deployments: dict[str, DeploymentState] = field(default_factory=dict)


# -- inputs --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Planned:
    """The shell read and planned `.comet.yml` at `sha`."""

    sha: str
    stages: tuple[StageState, ...]
    pipeline_name: str | None = None
    concurrency_group: str | None = None
    variable_defaults: dict[str, str] = field(default_factory=dict)
    cancel_in_progress: bool = False
    queue: int | None = None
    # Decided by the shell from the group's other runs: run now, wait, or refuse (queue full).
    admission: str = "run"
    refusal: str | None = None


@dataclass(frozen=True, slots=True)
class PlanFailed:
    reason: str
    sha: str | None = None


@dataclass(frozen=True, slots=True)
class AttemptStartedInput:
    stage: str
    number: int
    worker_id: str
    # When the attempt started on its worker (the stage's `started_at`); None: when decided.
    started_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AttemptFinishedInput:
    stage: str
    number: int
    status: str
    exit_code: int | None = None
    failure_kind: str | None = None
    failure_reason: str | None = None
    # The attempt's own times on its worker. A result can arrive before its start (events of one
    # run may be published out of order): `started_at` then stands in for the missing start.
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # What its test reports said (None: the stage asked for none) and its coverage.
    tests: TestOutcome | None = None
    line_rate: float | None = None  # 0..1; None: nothing measured


@dataclass(frozen=True, slots=True)
class TestOutcome:
    """The part of an attempt's test reports that decides its verdict."""

    __test__ = False  # not a pytest class
    failed: int = 0  # failed + errored cases
    quarantined: int = 0  # of those, quarantined
    report_errors: int = 0  # reports that could not be read


@dataclass(frozen=True, slots=True)
class CancelRequested:
    reason: str = "cancelled by a user"


@dataclass(frozen=True, slots=True)
class RetryRequested:
    pass


@dataclass(frozen=True, slots=True)
class Approved:
    stage: str


@dataclass(frozen=True, slots=True)
class GroupReleased:
    """The run's concurrency group has no active run any more: this waiting run may start."""


@dataclass(frozen=True, slots=True)
class DeploymentReviewedInput:
    deployment_id: uuid.UUID
    user_id: str
    decision: str  # approved | rejected
    comment: str
    at: datetime
    reviewer: str = ""


@dataclass(frozen=True, slots=True)
class DeploymentTimerInput:
    """A deployment's wait timer or approval deadline may have passed at `at`."""

    deployment_id: uuid.UUID
    at: datetime


@dataclass(frozen=True, slots=True)
class EnvironmentGranted:
    """The deployment's environment is free and the deployment is next in line."""

    deployment_id: uuid.UUID


Input = (
    Planned
    | PlanFailed
    | AttemptStartedInput
    | AttemptFinishedInput
    | CancelRequested
    | RetryRequested
    | Approved
    | GroupReleased
    | DeploymentReviewedInput
    | DeploymentTimerInput
    | EnvironmentGranted
)


# -- commands ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DispatchAttempt:
    stage: str
    number: int
    pool: str
    # A retry's backoff: the attempt is queued now but handed to workers only after this delay.
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class CancelAttempts:
    """Stop whatever attempts of these stages are queued or running."""

    stages: tuple[str, ...]


Command = DispatchAttempt | CancelAttempts


@dataclass(frozen=True, slots=True)
class Decision:
    state: RunState
    commands: tuple[Command, ...] = ()
    note: str = ""
