"""decide() for deploying stages (decision 0027): branch rules, approvals from distinct people,
self-approval, rejection, the approval deadline, the wait timer, the environment's turn, and the
deployment following its stage to its verdict."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

from orchestrator import deployments
from orchestrator.decide import decide
from orchestrator.model import (
    Approved,
    AttemptFinishedInput,
    AttemptStartedInput,
    CancelRequested,
    DeploymentReviewedInput,
    DeploymentTimerInput,
    DispatchAttempt,
    EnvironmentGranted,
    PlanFailed,
    Planned,
    RetryRequested,
    RunState,
    StageState,
)
from schemas.states import RunStatus, StageStatus

NOW = datetime(2026, 1, 1, tzinfo=UTC)
S = StageStatus
ALICE, BOB, CAROL = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())


def deploy_stage(status: StageStatus = S.PENDING, approval: bool = False, **rules: object) -> StageState:
    spec = {
        "script": "./deploy.sh",
        "environment": "production",
        "environment_url": "https://example.com",
        "approval": approval,
        "deploy_rules": rules,
    }
    return StageState(name="deploy", status=status, needs=("build",), spec=spec)


def a_run(deploy: StageState, ref: str = "refs/heads/main", **kw: object) -> RunState:
    build = StageState(name="build", status=S.SUCCEEDED, spec={"script": "true"}, attempt=1)
    return RunState(
        id=uuid.uuid4(),
        project_id=uuid.uuid4(),
        status=RunStatus.RUNNING,
        ref=ref,
        sha="a" * 40,
        stages={"build": build, "deploy": deploy},
        created_by=uuid.UUID(ALICE),
        **kw,  # type: ignore[arg-type]
    )


def opened(state: RunState, now: datetime = NOW) -> RunState:
    """The run once its build's result made the deploy stage ready: `decide` opens the deployment."""
    build = dataclasses.replace(state.stages["build"], status=S.RUNNING)
    running = dataclasses.replace(state, stages={**state.stages, "build": build})
    finished = AttemptFinishedInput("build", 1, "succeeded", exit_code=0, finished_at=now)
    return decide(running, finished, now).state


def review(
    state: RunState, user: str, decision: str = "approved", comment: str = "", at: datetime = NOW
) -> RunState:
    deployment = state.deployments["deploy"]
    event = DeploymentReviewedInput(
        deployment.id, user, decision, comment, at, reviewer=f"{user[:4]}@example.com"
    )
    return decide(state, event, at).state


def granted(state: RunState) -> tuple[RunState, tuple[object, ...]]:
    decision = decide(state, EnvironmentGranted(state.deployments["deploy"].id), NOW)
    return decision.state, decision.commands


def test_a_deploying_stage_opens_a_waiting_deployment_ready_for_its_environment() -> None:
    state = opened(a_run(deploy_stage()))

    deployment = state.deployments["deploy"]
    assert state.stages["deploy"].status is S.PENDING
    assert deployment.status == "waiting"
    assert deployment.ready_at == NOW
    assert deployment.reason == "waiting for environment production to be free"
    assert (deployment.sha, deployment.ref, deployment.url) == (
        "a" * 40,
        "refs/heads/main",
        "https://example.com",
    )
    assert deployment.triggered_by == uuid.UUID(ALICE)
    assert deployment.id == deployments.deployment_id(state.id, "deploy", 1)


def test_its_environment_being_granted_queues_the_stage_and_the_deployment_then_it_follows_the_stage() -> (
    None
):
    state, commands = granted(opened(a_run(deploy_stage())))

    assert commands == (DispatchAttempt("deploy", 1, "default"),)
    assert state.deployments["deploy"].status == "queued"
    started = decide(state, AttemptStartedInput("deploy", 1, "w1", started_at=NOW), NOW).state
    assert started.deployments["deploy"].status == "in_progress"
    done = decide(
        started, AttemptFinishedInput("deploy", 1, "succeeded", exit_code=0, finished_at=NOW), NOW
    ).state
    assert done.deployments["deploy"].status == "succeeded"
    assert done.deployments["deploy"].finished_at == NOW
    assert done.status is RunStatus.SUCCEEDED


def test_a_ref_the_branch_rule_does_not_allow_is_rejected_and_fails_the_stage_with_the_reason() -> None:
    state = opened(a_run(deploy_stage(branches=["main", "release/*"]), ref="refs/heads/feature/x"))

    deployment = state.deployments["deploy"]
    assert deployment.status == "rejected"
    assert deployment.reason == "branch feature/x may not deploy to production: only main, release/* may"
    assert state.stages["deploy"].status is S.FAILED
    assert state.stages["deploy"].failure_reason == deployment.reason
    assert state.status is RunStatus.FAILED


def test_a_branch_the_rule_allows_by_glob_deploys() -> None:
    state = opened(a_run(deploy_stage(branches=["main", "release/*"]), ref="refs/heads/release/2"))

    assert state.deployments["deploy"].status == "waiting"


def test_two_required_approvals_hold_the_stage_at_its_gate_until_two_distinct_people_approved() -> None:
    state = opened(a_run(deploy_stage(required_approvals=2, allow_self_approval=False)))
    assert state.stages["deploy"].status is S.WAITING_APPROVAL
    assert state.deployments["deploy"].reason == "waiting for 2 more approvals (0 of 2)"
    assert state.deployments["deploy"].expires_at == NOW + timedelta(hours=24)

    own = review(state, ALICE)
    assert own == state  # the person who triggered it may not approve it here
    once = review(state, BOB)
    assert once.deployments["deploy"].reason == "waiting for 1 more approval (1 of 2)"
    assert review(once, BOB) == once  # the same person twice counts once
    twice = review(once, CAROL)

    assert twice.deployments["deploy"].ready_at == NOW
    assert [r.user_id for r in twice.deployments["deploy"].approvals] == [BOB, CAROL]
    state, commands = granted(twice)
    assert state.stages["deploy"].status is S.QUEUED
    assert commands == (DispatchAttempt("deploy", 1, "default"),)


def test_self_approval_counts_where_the_environment_allows_it() -> None:
    state = opened(a_run(deploy_stage(required_approvals=1, allow_self_approval=True)))

    assert review(state, ALICE).deployments["deploy"].ready_at == NOW


def test_the_person_who_triggered_it_never_counts_when_two_approvals_are_required() -> None:
    # CONTRACT §4: whatever the environment allows for a single approval.
    state = opened(a_run(deploy_stage(required_approvals=2, allow_self_approval=True)))

    assert review(state, ALICE) == state
    assert review(review(state, BOB), CAROL).deployments["deploy"].ready_at == NOW


def test_a_rejection_fails_the_stage_with_who_rejected_it_and_why() -> None:
    state = review(opened(a_run(deploy_stage(approval=True))), BOB, "rejected", "not on a Friday")

    deployment = state.deployments["deploy"]
    assert deployment.status == "rejected"
    assert state.stages["deploy"].status is S.FAILED
    assert state.stages["deploy"].failure_reason == (
        f"deployment to production rejected by {BOB[:4]}@example.com: not on a Friday"
    )
    assert state.stages["deploy"].failure_kind == deployments.REFUSED_KIND
    assert state.status is RunStatus.FAILED


def test_no_approval_by_the_deadline_fails_the_deployment_and_its_stage() -> None:
    state = opened(a_run(deploy_stage(approval=True, approval_timeout_s=3600)))
    deployment = state.deployments["deploy"]

    early = decide(state, DeploymentTimerInput(deployment.id, NOW + timedelta(minutes=59)), NOW).state
    late = decide(state, DeploymentTimerInput(deployment.id, NOW + timedelta(hours=1)), NOW).state

    assert early == state
    assert late.deployments["deploy"].status == "failed"
    assert late.deployments["deploy"].reason == "no approval within 1 h: 0 of 1 required approvals were given"
    assert late.stages["deploy"].status is S.FAILED


def test_the_wait_timer_holds_an_approved_deployment_until_it_passes() -> None:
    state = review(opened(a_run(deploy_stage(approval=True, wait_timer_s=600))), BOB)
    deployment = state.deployments["deploy"]
    assert deployment.wait_until == NOW + timedelta(minutes=10)
    assert deployment.ready_at is None

    passed = decide(state, DeploymentTimerInput(deployment.id, NOW + timedelta(minutes=10)), NOW).state

    assert passed.deployments["deploy"].ready_at == NOW + timedelta(minutes=10)


def test_a_deployment_not_ready_is_not_granted_its_environment() -> None:
    state = opened(a_run(deploy_stage(approval=True)))

    decision = decide(state, EnvironmentGranted(state.deployments["deploy"].id), NOW)

    assert decision.state == state
    assert "not ready" in decision.note


def test_the_stage_approval_route_of_a_deploying_stage_is_no_second_gate() -> None:
    state = opened(a_run(deploy_stage(approval=True)))

    decision = decide(state, Approved("deploy"), NOW)

    assert decision.state == state
    assert "its deployment's reviews" in decision.note


def test_cancelling_the_run_cancels_its_waiting_deployment() -> None:
    state = opened(a_run(deploy_stage(approval=True)))

    cancelled = decide(state, CancelRequested("stop"), NOW).state

    assert cancelled.deployments["deploy"].status == "cancelled"
    assert cancelled.status is RunStatus.CANCELLED


def test_a_retried_run_deploys_again_as_a_new_deployment() -> None:
    state = review(opened(a_run(deploy_stage(approval=True))), BOB, "rejected")
    retried = decide(state, RetryRequested(), NOW).state

    again = retried.deployments["deploy"]
    assert again.number == 2
    assert again.status == "waiting"
    assert again.id != state.deployments["deploy"].id


def test_a_rollback_run_marks_its_deployment_as_a_rollback() -> None:
    earlier = uuid.uuid4()
    state = opened(a_run(deploy_stage(), trigger={"kind": "rollback", "rollback_of": str(earlier)}))

    assert state.deployments["deploy"].rollback_of == earlier


def test_every_deployment_change_is_one_status_event() -> None:
    before = a_run(deploy_stage())
    after = opened(before)

    events = deployments.status_changes(before, after, NOW)

    assert [(e.status, e.previous, e.environment, e.stage) for e in events] == [
        ("waiting", None, "production", "deploy")
    ]
    assert events[0].deployment_id == after.deployments["deploy"].id


def test_a_pure_approval_gate_that_deploys_succeeds_once_its_environment_is_granted() -> None:
    gate = dataclasses.replace(
        deploy_stage(approval=True), spec={**deploy_stage(approval=True).spec, "script": ""}
    )
    state, commands = granted(review(opened(a_run(gate)), BOB))

    assert commands == ()
    assert state.stages["deploy"].status is S.SUCCEEDED
    assert state.deployments["deploy"].status == "succeeded"


def planned_stages(*stages: StageState) -> Planned:
    return Planned(sha="b" * 40, stages=stages)


def test_a_rollback_plan_holds_only_the_deploying_stage_without_its_needs() -> None:
    build = StageState(name="build", status=S.PENDING, spec={"script": "true"})
    plan = planned_stages(build, deploy_stage())

    rolled = deployments.rollback_plan(plan, {"kind": "rollback", "stages": ["deploy"]})

    assert isinstance(rolled, Planned)
    assert [(s.name, s.needs) for s in rolled.stages] == [("deploy", ())]
    assert deployments.rollback_plan(plan, {"kind": "api"}) == plan


def test_a_rollback_to_a_stage_the_definition_no_longer_has_fails_its_plan_with_the_reason() -> None:
    plan = planned_stages(deploy_stage())

    failed = deployments.rollback_plan(plan, {"kind": "rollback", "stages": ["ship"]})

    assert isinstance(failed, PlanFailed)
    assert failed.reason == f"cannot roll back: .comet.yml at {'b' * 12} has no deploying stage ship"


def test_a_plan_keeps_each_environments_rules_in_its_deploying_stages() -> None:
    rules = deployments.Rules(required_approvals=2, branches=("main",), approval_timeout_s=60)
    plan = deployments.with_rules(planned_stages(deploy_stage()), {"production": rules})

    assert deployments.rules_of(plan.stages[0].spec) == rules
