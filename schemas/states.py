"""Run, stage and attempt states, and the one table of transitions allowed between them.

Every status change anywhere in Comet goes through `check_transition`, which refuses the rest.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    REQUESTED = "requested"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StageStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    WAITING_APPROVAL = "waiting_approval"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


class AttemptStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"


class FailureKind(StrEnum):
    """Why an attempt or stage failed; `retry.when` in `.comet.yml` selects among these."""

    SCRIPT_FAILURE = "script_failure"
    TIMEOUT = "timeout"
    LOST_WORKER = "lost_worker"
    CHECKOUT_FAILED = "checkout_failed"
    NEEDS_FAILED = "needs_failed"
    CANCELLED = "cancelled"
    INVALID_DEFINITION = "invalid_definition"
    # The script succeeded but its line coverage is below the stage's `coverage.min` (not retried).
    COVERAGE = "coverage_below_minimum"


class TestStatus(StrEnum):
    """A test case's result, whatever framework reported it."""

    __test__ = False  # not a pytest class
    PASSED = "passed"
    FAILED = "failed"
    ERRORED = "errored"
    SKIPPED = "skipped"


RUN_TERMINAL = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})
STAGE_TERMINAL = frozenset(
    {StageStatus.SUCCEEDED, StageStatus.FAILED, StageStatus.CANCELLED, StageStatus.SKIPPED}
)
ATTEMPT_TERMINAL = frozenset(
    {AttemptStatus.SUCCEEDED, AttemptStatus.FAILED, AttemptStatus.CANCELLED, AttemptStatus.LOST}
)

_R = RunStatus
_S = StageStatus
_A = AttemptStatus

RUN_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    _R.REQUESTED: frozenset({_R.QUEUED, _R.FAILED, _R.CANCELLED}),
    _R.QUEUED: frozenset({_R.RUNNING, _R.SUCCEEDED, _R.FAILED, _R.CANCELLED}),
    _R.RUNNING: frozenset({_R.SUCCEEDED, _R.FAILED, _R.CANCELLED}),
    # A finished run may be retried: its failed stages run again as new attempts.
    _R.SUCCEEDED: frozenset(),
    _R.FAILED: frozenset({_R.QUEUED}),
    _R.CANCELLED: frozenset({_R.QUEUED}),
}

STAGE_TRANSITIONS: dict[StageStatus, frozenset[StageStatus]] = {
    _S.PENDING: frozenset({_S.QUEUED, _S.WAITING_APPROVAL, _S.SKIPPED, _S.CANCELLED, _S.FAILED}),
    _S.WAITING_APPROVAL: frozenset({_S.QUEUED, _S.CANCELLED, _S.FAILED}),
    _S.QUEUED: frozenset({_S.RUNNING, _S.QUEUED, _S.CANCELLED, _S.FAILED}),
    # running -> queued is a retry: a new attempt is dispatched.
    _S.RUNNING: frozenset({_S.SUCCEEDED, _S.FAILED, _S.CANCELLED, _S.QUEUED}),
    _S.SUCCEEDED: frozenset(),
    # A retried run re-queues its failed, cancelled and skipped stages (pending again).
    _S.FAILED: frozenset({_S.PENDING}),
    _S.CANCELLED: frozenset({_S.PENDING}),
    _S.SKIPPED: frozenset({_S.PENDING}),
}

ATTEMPT_TRANSITIONS: dict[AttemptStatus, frozenset[AttemptStatus]] = {
    _A.QUEUED: frozenset({_A.RUNNING, _A.CANCELLED, _A.LOST}),
    _A.RUNNING: frozenset({_A.SUCCEEDED, _A.FAILED, _A.CANCELLED, _A.LOST}),
    _A.SUCCEEDED: frozenset(),
    _A.FAILED: frozenset(),
    _A.CANCELLED: frozenset(),
    _A.LOST: frozenset(),
}


class IllegalTransitionError(ValueError):
    """A status change that the transition table does not allow."""

    def __init__(self, kind: str, current: str, new: str) -> None:
        super().__init__(f"illegal {kind} transition {current} -> {new}")
        self.kind = kind
        self.current = current
        self.new = new


def check_run(current: RunStatus, new: RunStatus) -> RunStatus:
    if new not in RUN_TRANSITIONS[current]:
        raise IllegalTransitionError("run", current, new)
    return new


def check_stage(current: StageStatus, new: StageStatus) -> StageStatus:
    if new not in STAGE_TRANSITIONS[current]:
        raise IllegalTransitionError("stage", current, new)
    return new


def check_attempt(current: AttemptStatus, new: AttemptStatus) -> AttemptStatus:
    if new not in ATTEMPT_TRANSITIONS[current]:
        raise IllegalTransitionError("attempt", current, new)
    return new
