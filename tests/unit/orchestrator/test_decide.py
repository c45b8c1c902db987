"""decide(): every transition, as tables of (state, input) -> expected state and commands."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.decide import decide
from orchestrator.model import (
    Approved,
    AttemptFinishedInput,
    AttemptStartedInput,
    CancelAttempts,
    CancelRequested,
    DispatchAttempt,
    GroupReleased,
    PlanFailed,
    Planned,
    RetryRequested,
    RunState,
    StageState,
)
from schemas.states import RunStatus, StageStatus

NOW = datetime(2026, 1, 1, tzinfo=UTC)
S = StageStatus


def stage(
    name: str,
    *needs: str,
    status: StageStatus = S.PENDING,
    attempt: int = 0,
    condition: str | None = None,
    **spec: object,
) -> StageState:
    if condition is not None:
        spec["if"] = condition
    return StageState(name=name, status=status, needs=needs, spec={"script": "true", **spec}, attempt=attempt)


def run(status: RunStatus = RunStatus.RUNNING, *stages: StageState, **kw: object) -> RunState:
    return RunState(
        id=uuid.uuid4(),
        project_id=uuid.uuid4(),
        status=status,
        ref="refs/heads/main",
        sha="a" * 40,
        stages={s.name: s for s in stages},
        **kw,  # type: ignore[arg-type]
    )


def statuses(state: RunState) -> dict[str, str]:
    return {name: s.status.value for name, s in state.stages.items()}


DIAMOND = (stage("lint"), stage("unit", "lint"), stage("build", "lint"), stage("deploy", "unit", "build"))


def test_planning_queues_every_root_stage_at_once_and_nothing_else() -> None:
    requested = run(RunStatus.REQUESTED)
    d = decide(requested, Planned(sha="b" * 40, stages=(stage("a"), stage("b"), stage("c", "a", "b"))), NOW)
    assert d.state.status is RunStatus.QUEUED
    assert d.state.sha == "b" * 40
    assert statuses(d.state) == {"a": "queued", "b": "queued", "c": "pending"}
    assert set(d.commands) == {DispatchAttempt("a", 1, "default"), DispatchAttempt("b", 1, "default")}


def test_plan_failure_fails_the_run_with_the_reason() -> None:
    d = decide(run(RunStatus.REQUESTED), PlanFailed("needs form a cycle: a -> b -> a"), NOW)
    assert d.state.status is RunStatus.FAILED
    assert d.state.failure_reason == "needs form a cycle: a -> b -> a"
    assert d.state.finished_at == NOW


def test_a_second_plan_for_the_same_run_is_ignored() -> None:
    state = run(RunStatus.QUEUED, stage("a", status=S.QUEUED, attempt=1))
    d = decide(state, Planned(sha="c" * 40, stages=(stage("x"),)), NOW)
    assert d.state == state
    assert d.commands == ()
    assert d.note.startswith("ignored")


def test_first_attempt_start_moves_stage_and_run_to_running() -> None:
    state = run(RunStatus.QUEUED, stage("a", status=S.QUEUED, attempt=1))
    d = decide(state, AttemptStartedInput("a", 1, "w1"), NOW)
    assert d.state.status is RunStatus.RUNNING
    assert d.state.started_at == NOW
    assert d.state.stages["a"].status is S.RUNNING


@pytest.mark.parametrize(
    ("event", "why"),
    [
        (AttemptStartedInput("a", 2, "w1"), "a start for another attempt number"),
        (AttemptStartedInput("zzz", 1, "w1"), "a start for an unknown stage"),
    ],
)
def test_starts_that_do_not_match_the_stage_are_ignored(event: AttemptStartedInput, why: str) -> None:
    state = run(RunStatus.QUEUED, stage("a", status=S.QUEUED, attempt=1))
    assert decide(state, event, NOW).state == state, why


def test_success_of_both_parents_queues_the_fan_in_stage() -> None:
    state = run(
        RunStatus.RUNNING,
        stage("lint", status=S.SUCCEEDED, attempt=1),
        stage("unit", "lint", status=S.SUCCEEDED, attempt=1),
        stage("build", "lint", status=S.RUNNING, attempt=1),
        stage("deploy", "unit", "build"),
    )
    d = decide(state, AttemptFinishedInput("build", 1, "succeeded", exit_code=0), NOW)
    assert statuses(d.state)["deploy"] == "queued"
    assert d.commands == (DispatchAttempt("deploy", 1, "default"),)


def test_a_failed_stage_skips_its_dependents_and_fails_the_run_with_its_exit_code() -> None:
    state = run(RunStatus.RUNNING, stage("lint", status=S.RUNNING, attempt=1), *DIAMOND[1:])
    d = decide(state, AttemptFinishedInput("lint", 1, "failed", 3, "script_failure", "exit code 3"), NOW)
    assert statuses(d.state) == {"lint": "failed", "unit": "skipped", "build": "skipped", "deploy": "skipped"}
    assert d.state.stages["lint"].exit_code == 3
    assert d.state.status is RunStatus.FAILED
    assert d.state.failure_reason == "stage lint failed: exit code 3"
    assert d.commands == ()


def test_allowed_failure_lets_dependents_run_and_the_run_succeed() -> None:
    state = run(
        RunStatus.RUNNING,
        stage("lint", status=S.RUNNING, attempt=1, allow_failure=True),
        stage("unit", "lint"),
    )
    d = decide(state, AttemptFinishedInput("lint", 1, "failed", 1, "script_failure"), NOW)
    assert statuses(d.state) == {"lint": "failed", "unit": "queued"}
    d2 = decide(
        decide(d.state, AttemptStartedInput("unit", 1, "w"), NOW).state,
        AttemptFinishedInput("unit", 1, "succeeded", 0),
        NOW,
    )
    assert d2.state.status is RunStatus.SUCCEEDED


def test_retry_policy_dispatches_a_new_attempt_after_a_script_failure() -> None:
    state = run(
        RunStatus.RUNNING,
        stage("t", status=S.RUNNING, attempt=1, retry={"count": 2, "when": ["script_failure"]}),
    )
    d = decide(state, AttemptFinishedInput("t", 1, "failed", 1, "script_failure"), NOW)
    assert d.state.stages["t"].status is S.QUEUED
    assert d.state.stages["t"].attempt == 2
    assert d.commands == (DispatchAttempt("t", 2, "default"),)
    assert d.state.status is RunStatus.RUNNING


def test_retries_stop_when_the_count_is_used_up() -> None:
    state = run(RunStatus.RUNNING, stage("t", status=S.RUNNING, attempt=3, retry={"count": 2}))
    d = decide(state, AttemptFinishedInput("t", 3, "failed", 1, "script_failure"), NOW)
    assert d.state.stages["t"].status is S.FAILED
    assert d.state.status is RunStatus.FAILED


def test_a_failure_kind_outside_retry_when_is_not_retried() -> None:
    state = run(
        RunStatus.RUNNING,
        stage("t", status=S.RUNNING, attempt=1, retry={"count": 2, "when": ["lost_worker"]}),
    )
    d = decide(state, AttemptFinishedInput("t", 1, "failed", 1, "script_failure"), NOW)
    assert d.state.stages["t"].status is S.FAILED


def test_a_lost_worker_is_retried_as_a_new_attempt_by_default_policy() -> None:
    state = run(RunStatus.RUNNING, stage("t", status=S.RUNNING, attempt=1, retry={"count": 1}))
    d = decide(state, AttemptFinishedInput("t", 1, "lost", None, "lost_worker", "worker w stopped"), NOW)
    assert d.commands == (DispatchAttempt("t", 2, "default"),)


def test_a_lost_worker_without_retries_fails_the_stage_with_lost_worker() -> None:
    state = run(RunStatus.RUNNING, stage("t", status=S.RUNNING, attempt=1))
    d = decide(state, AttemptFinishedInput("t", 1, "lost", None, "lost_worker", "worker w stopped"), NOW)
    assert d.state.stages["t"].failure_kind == "lost_worker"
    assert d.state.status is RunStatus.FAILED


def test_a_result_for_an_old_attempt_changes_nothing() -> None:
    state = run(RunStatus.RUNNING, stage("t", status=S.RUNNING, attempt=2))
    d = decide(state, AttemptFinishedInput("t", 1, "succeeded", 0), NOW)
    assert d.state == state


def test_a_result_for_a_finished_stage_changes_nothing() -> None:
    state = run(
        RunStatus.RUNNING, stage("t", status=S.SUCCEEDED, attempt=1), stage("u", status=S.RUNNING, attempt=1)
    )
    assert decide(state, AttemptFinishedInput("t", 1, "failed", 1), NOW).state == state


def test_cancel_cancels_waiting_stages_and_asks_workers_to_stop_running_ones() -> None:
    state = run(
        RunStatus.RUNNING,
        stage("a", status=S.RUNNING, attempt=1),
        stage("b", status=S.QUEUED, attempt=1),
        stage("c", "a"),
    )
    d = decide(state, CancelRequested("stop it"), NOW)
    assert statuses(d.state) == {"a": "running", "b": "cancelled", "c": "cancelled"}
    assert CancelAttempts(("a", "b")) in d.commands
    assert d.state.status is RunStatus.RUNNING
    assert d.state.cancel_requested_at == NOW
    done = decide(
        d.state, AttemptFinishedInput("a", 1, "cancelled", 143, "cancelled"), NOW + timedelta(seconds=1)
    )
    assert done.state.status is RunStatus.CANCELLED
    assert done.state.failure_reason == "stop it"


def test_cancel_of_a_run_with_nothing_running_finishes_it_at_once() -> None:
    d = decide(
        run(RunStatus.QUEUED, stage("a", "b"), stage("b", status=S.QUEUED, attempt=1)), CancelRequested(), NOW
    )
    assert d.state.status is RunStatus.CANCELLED


def test_cancel_of_a_finished_run_is_ignored() -> None:
    state = run(RunStatus.SUCCEEDED, stage("a", status=S.SUCCEEDED, attempt=1))
    assert decide(state, CancelRequested(), NOW).state == state


def test_a_stage_failing_after_cancel_counts_as_cancelled_not_retried() -> None:
    state = run(
        RunStatus.RUNNING,
        stage("a", status=S.RUNNING, attempt=1, retry={"count": 3}),
        cancel_requested_at=NOW,
    )
    d = decide(state, AttemptFinishedInput("a", 1, "failed", 143, "script_failure"), NOW)
    assert d.state.stages["a"].status is S.CANCELLED
    assert d.commands == ()


def test_retry_reruns_only_failed_and_skipped_stages_as_new_attempts() -> None:
    state = run(
        RunStatus.FAILED,
        stage("lint", status=S.SUCCEEDED, attempt=1),
        stage("unit", "lint", status=S.FAILED, attempt=1),
        stage("deploy", "unit", status=S.SKIPPED),
        failure_reason="stage unit failed",
    )
    d = decide(state, RetryRequested(), NOW)
    assert d.state.status is RunStatus.QUEUED
    assert d.state.retries == 1
    assert d.state.failure_reason is None
    assert statuses(d.state) == {"lint": "succeeded", "unit": "queued", "deploy": "pending"}
    assert d.commands == (DispatchAttempt("unit", 2, "default"),)


def test_retry_of_a_successful_run_is_ignored() -> None:
    state = run(RunStatus.SUCCEEDED, stage("a", status=S.SUCCEEDED, attempt=1))
    assert decide(state, RetryRequested(), NOW).note.startswith("ignored")


def test_approval_gate_waits_then_dispatches_on_approval() -> None:
    state = run(
        RunStatus.RUNNING,
        stage("build", status=S.RUNNING, attempt=1),
        stage("deploy", "build", approval=True),
    )
    waiting = decide(state, AttemptFinishedInput("build", 1, "succeeded", 0), NOW).state
    assert waiting.stages["deploy"].status is S.WAITING_APPROVAL
    assert waiting.status is RunStatus.RUNNING
    d = decide(waiting, Approved("deploy"), NOW)
    assert d.commands == (DispatchAttempt("deploy", 1, "default"),)


def test_approving_a_stage_that_is_not_waiting_is_ignored() -> None:
    state = run(RunStatus.RUNNING, stage("deploy", status=S.RUNNING, attempt=1))
    assert decide(state, Approved("deploy"), NOW).state == state


def test_a_false_if_skips_the_stage_without_failing_the_run() -> None:
    state = run(
        RunStatus.RUNNING,
        stage("a", status=S.RUNNING, attempt=1),
        stage("deploy", "a", condition="ref == 'refs/heads/prod'"),
    )
    d = decide(state, AttemptFinishedInput("a", 1, "succeeded", 0), NOW)
    assert d.state.stages["deploy"].status is S.SKIPPED
    assert d.state.status is RunStatus.SUCCEEDED


def test_an_always_condition_runs_cleanup_after_a_failure() -> None:
    state = run(
        RunStatus.RUNNING,
        stage("a", status=S.RUNNING, attempt=1),
        stage("cleanup", "a", condition="always()"),
    )
    d = decide(state, AttemptFinishedInput("a", 1, "failed", 1, "script_failure"), NOW)
    assert d.state.stages["cleanup"].status is S.QUEUED
    assert d.state.status is RunStatus.RUNNING


def test_stage_pool_is_carried_into_the_dispatch() -> None:
    d = decide(
        run(RunStatus.REQUESTED),
        Planned(sha="b" * 40, stages=(dataclasses.replace(stage("build"), pool="linux"),)),
        NOW,
    )
    assert d.commands == (DispatchAttempt("build", 1, "linux"),)


def test_every_status_change_respects_the_transition_table() -> None:
    """Replaying a whole diamond run never raises IllegalTransitionError."""
    state = decide(run(RunStatus.REQUESTED), Planned(sha="b" * 40, stages=DIAMOND), NOW).state
    for name in ("lint", "unit", "build", "deploy"):
        state = decide(state, AttemptStartedInput(name, 1, "w"), NOW).state
        state = decide(state, AttemptFinishedInput(name, 1, "succeeded", 0), NOW).state
    assert state.status is RunStatus.SUCCEEDED
    assert all(s.status is S.SUCCEEDED for s in state.stages.values())


def test_a_run_told_to_wait_for_its_group_is_queued_without_dispatching() -> None:
    d = decide(run(RunStatus.REQUESTED), Planned(sha="b" * 40, stages=(stage("a"),), admission="wait"), NOW)
    assert d.state.status is RunStatus.QUEUED
    assert d.state.waiting_for_group
    assert d.commands == ()
    released = decide(d.state, GroupReleased(), NOW)
    assert not released.state.waiting_for_group
    assert released.commands == (DispatchAttempt("a", 1, "default"),)


def test_a_refused_run_fails_with_the_refusal_and_cancels_its_stages() -> None:
    d = decide(
        run(RunStatus.REQUESTED),
        Planned(sha="b" * 40, stages=(stage("a"),), admission="refuse", refusal="group full"),
        NOW,
    )
    assert d.state.status is RunStatus.FAILED
    assert d.state.failure_reason == "group full"
    assert statuses(d.state) == {"a": "cancelled"}


def test_a_release_for_a_run_that_does_not_wait_is_ignored() -> None:
    state = run(RunStatus.RUNNING, stage("a", status=S.RUNNING, attempt=1))
    assert decide(state, GroupReleased(), NOW).state == state


def test_definition_variable_defaults_yield_to_trigger_variables() -> None:
    requested = run(RunStatus.REQUESTED, variables={"TARGET": "staging"})
    planned = Planned(sha="b" * 40, stages=(stage("a"),), variable_defaults={"TARGET": "prod", "LEVEL": "1"})
    assert decide(requested, planned, NOW).state.variables == {"TARGET": "staging", "LEVEL": "1"}


def test_a_retry_carries_the_backoff_of_the_retry_policy() -> None:
    state = run(
        RunStatus.RUNNING, stage("t", status=S.RUNNING, attempt=1, retry={"count": 1, "backoff_s": 5.0})
    )
    d = decide(state, AttemptFinishedInput("t", 1, "failed", 1, "script_failure"), NOW)
    assert d.commands == (DispatchAttempt("t", 2, "default", delay_s=5.0),)
