"""The orchestrator's brain: `decide(state, input, now) -> Decision`.

Pure: no awaits, no clock (time comes in as `now`), no Kafka, no database. It never raises for
bad runtime input: an input that does not apply to the state is ignored with a note, and a
failure is expressed as state (a failed stage or run). Every status change goes through the
transition table of `schemas.states`.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from orchestrator import deployments
from orchestrator.conditions import stage_should_run
from orchestrator.model import (
    Approved,
    AttemptFinishedInput,
    AttemptStartedInput,
    CancelAttempts,
    CancelRequested,
    Command,
    Decision,
    DeploymentReviewedInput,
    DeploymentState,
    DeploymentTimerInput,
    DispatchAttempt,
    EnvironmentGranted,
    GroupReleased,
    Input,
    PlanFailed,
    Planned,
    RetryRequested,
    Review,
    RunState,
    StageState,
)
from schemas.states import (
    RUN_TERMINAL,
    STAGE_TERMINAL,
    AttemptStatus,
    FailureKind,
    IllegalTransitionError,
    RunStatus,
    StageStatus,
    check_run,
    check_stage,
)

_ACTIVE = frozenset({StageStatus.QUEUED, StageStatus.RUNNING})


def decide(state: RunState, event: Input, now: datetime) -> Decision:
    """The run's next state and the commands it implies. Whatever order a run's events arrive in,
    duplicated or stale, this returns a decision: an input that does not apply is ignored with a
    note (kept in the run's history), never an exception."""
    try:
        decision = _decide(state, event, now)
        # A deployment follows its stage (running, its verdict, a cancel): decision 0027.
        return dataclasses.replace(decision, state=deployments.follow_stages(decision.state, now))
    except IllegalTransitionError as exc:
        # A case the handlers below do not foresee: refuse it, keep the state, and say why.
        return _ignored(state, f"{type(event).__name__} refused: {exc}")


def _decide(state: RunState, event: Input, now: datetime) -> Decision:
    match event:
        case Planned():
            return _planned(state, event, now)
        case PlanFailed():
            return _plan_failed(state, event, now)
        case AttemptStartedInput():
            return _attempt_started(state, event, now)
        case AttemptFinishedInput():
            return _attempt_finished(state, event, now)
        case CancelRequested():
            return _cancel(state, event, now)
        case RetryRequested():
            return _retry(state, now)
        case Approved():
            return _approved(state, event, now)
        case GroupReleased():
            return _released(state, now)
        case DeploymentReviewedInput():
            return _deployment_reviewed(state, event, now)
        case DeploymentTimerInput():
            return _deployment_timer(state, event)
        case EnvironmentGranted():
            return _environment_granted(state, event, now)


# -- helpers -------------------------------------------------------------------------------------
def _set_run(state: RunState, status: RunStatus, now: datetime, **changes: object) -> RunState:
    check_run(state.status, status)
    stamps: dict[str, object] = {}
    if status is RunStatus.QUEUED:
        stamps = {"queued_at": state.queued_at or now, "finished_at": None}
    elif status is RunStatus.RUNNING:
        stamps = {"started_at": state.started_at or now}
    elif status in RUN_TERMINAL:
        stamps = {"finished_at": now}
    return dataclasses.replace(state, status=status, **stamps, **changes)  # type: ignore[arg-type]


def _set_stage(stage: StageState, status: StageStatus, now: datetime, **changes: object) -> StageState:
    check_stage(stage.status, status)
    stamps: dict[str, object] = {}
    if status is StageStatus.QUEUED:
        stamps = {"queued_at": now, "finished_at": None}
    elif status is StageStatus.RUNNING:
        stamps = {"started_at": now}
    elif status in STAGE_TERMINAL:
        stamps = {"finished_at": now}
    elif status is StageStatus.PENDING:
        stamps = {
            "finished_at": None,
            "exit_code": None,
            "failure_kind": None,
            "failure_reason": None,
            "note": None,
        }
    return dataclasses.replace(stage, status=status, **stamps, **changes)  # type: ignore[arg-type]


def _with_stage(state: RunState, stage: StageState) -> RunState:
    return dataclasses.replace(state, stages={**state.stages, stage.name: stage})


def _ignored(state: RunState, why: str) -> Decision:
    return Decision(state, (), f"ignored: {why}")


def _queue(stage: StageState, now: datetime) -> tuple[StageState, DispatchAttempt]:
    number = stage.attempt + 1
    queued = _set_stage(stage, StageStatus.QUEUED, now, attempt=number)
    return queued, DispatchAttempt(stage.name, number, stage.pool)


# -- inputs --------------------------------------------------------------------------------------
def _planned(state: RunState, event: Planned, now: datetime) -> Decision:
    if state.status is not RunStatus.REQUESTED:
        return _ignored(state, f"run is {state.status}, already planned")
    stages = {s.name: s for s in sorted(event.stages, key=lambda s: s.position)}
    variables = {**event.variable_defaults, **state.variables}
    common: dict[str, object] = {
        "sha": event.sha,
        "stages": stages,
        "pipeline_name": event.pipeline_name,
        "concurrency_group": event.concurrency_group,
        "variables": variables,
    }
    if event.admission == "refuse":
        refused = _set_run(state, RunStatus.FAILED, now, failure_reason=event.refusal, **common)
        return Decision(_cancel_pending(refused, now))
    planned = _set_run(state, RunStatus.QUEUED, now, waiting_for_group=event.admission == "wait", **common)
    return _advance(planned, now)


def _cancel_pending(state: RunState, now: datetime) -> RunState:
    stages = {
        name: _set_stage(s, StageStatus.CANCELLED, now, failure_kind=FailureKind.CANCELLED)
        if s.status is StageStatus.PENDING
        else s
        for name, s in state.stages.items()
    }
    return dataclasses.replace(state, stages=stages)


def _released(state: RunState, now: datetime) -> Decision:
    if not state.waiting_for_group or state.status in RUN_TERMINAL:
        return _ignored(state, "run is not waiting for its concurrency group")
    return _advance(dataclasses.replace(state, waiting_for_group=False), now)


def _plan_failed(state: RunState, event: PlanFailed, now: datetime) -> Decision:
    if state.status is not RunStatus.REQUESTED:
        return _ignored(state, f"run is {state.status}")
    failed = _set_run(state, RunStatus.FAILED, now, failure_reason=event.reason, sha=event.sha or state.sha)
    return Decision(failed)


def _start(state: RunState, stage: StageState, at: datetime) -> RunState:
    """The stage's attempt runs since `at` (its worker's clock); the run runs since its first
    stage did, whichever start arrived first."""
    new = _with_stage(state, _set_stage(stage, StageStatus.RUNNING, at))
    if new.status is RunStatus.QUEUED:
        return _set_run(new, RunStatus.RUNNING, at)
    if new.started_at is not None and at < new.started_at:
        return dataclasses.replace(new, started_at=at)
    return new


def _attempt_started(state: RunState, event: AttemptStartedInput, now: datetime) -> Decision:
    stage = state.stages.get(event.stage)
    if stage is None:
        return _ignored(state, f"start of {event.stage}#{event.number}: the run has no such stage")
    if stage.attempt != event.number:
        return _ignored(
            state, f"start of {event.stage}#{event.number} is stale (attempt {stage.attempt} is current)"
        )
    if stage.status is not StageStatus.QUEUED:
        # Its result (or a cancel) was applied first: the start adds nothing.
        return _ignored(
            state, f"start of {event.stage}#{event.number} arrived with the stage already {stage.status}"
        )
    return Decision(_start(state, stage, event.started_at or now))


def _attempt_finished(state: RunState, event: AttemptFinishedInput, now: datetime) -> Decision:
    stage = state.stages.get(event.stage)
    if stage is None:
        return _ignored(state, f"result of {event.stage}#{event.number}: the run has no such stage")
    if stage.attempt != event.number:
        return _ignored(
            state, f"result of {event.stage}#{event.number} is stale (attempt {stage.attempt} is current)"
        )
    if stage.status not in _ACTIVE:
        return _ignored(
            state, f"result of {event.stage}#{event.number} arrived with the stage already {stage.status}"
        )
    if stage.status is StageStatus.QUEUED:
        # The result overtook the attempt's start: apply the start it implies first.
        state = _start(state, stage, event.started_at or event.finished_at or now)
        stage = state.stages[event.stage]
    at = event.finished_at or now
    verdict = _verdict(stage, event)
    result = {
        "exit_code": event.exit_code,
        "failure_kind": verdict.failure_kind,
        "failure_reason": verdict.failure_reason,
        "note": verdict.note,
    }
    commands: list[Command] = []
    if verdict.status == AttemptStatus.SUCCEEDED:
        updated = _set_stage(stage, StageStatus.SUCCEEDED, at, **result)
    elif verdict.status == AttemptStatus.CANCELLED or state.cancel_requested_at is not None:
        updated = _set_stage(stage, StageStatus.CANCELLED, at, **result)
    elif (
        stage.attempt <= stage.retry_count
        and (verdict.failure_kind or FailureKind.SCRIPT_FAILURE) in stage.retry_when
        and state.status not in RUN_TERMINAL
    ):
        updated, dispatch = _queue(dataclasses.replace(stage, **result), now)  # type: ignore[arg-type]
        commands.append(dataclasses.replace(dispatch, delay_s=stage.retry_backoff_s))
    else:
        updated = _set_stage(stage, StageStatus.FAILED, at, **result)
    new = _with_stage(state, updated)
    decision = _advance(new, now)
    note = f"stage {stage.name}: {verdict.note}" if verdict.note else decision.note
    return Decision(decision.state, (*commands, *decision.commands), note)


@dataclasses.dataclass(frozen=True, slots=True)
class _Verdict:
    status: str
    failure_kind: str | None
    failure_reason: str | None
    note: str | None = None


def _verdict(stage: StageState, event: AttemptFinishedInput) -> _Verdict:
    """How an attempt's result counts for its stage once its tests and coverage are weighed:
    a script that failed only because of quarantined tests succeeds (with a note saying so); a
    success below `coverage.min` fails with the reason."""
    verdict = _Verdict(event.status, event.failure_kind, event.failure_reason)
    tests = event.tests
    if (
        event.status == AttemptStatus.FAILED
        and (event.failure_kind or FailureKind.SCRIPT_FAILURE) == FailureKind.SCRIPT_FAILURE
        and tests is not None
        and tests.failed > 0
        and tests.quarantined == tests.failed
        and tests.report_errors == 0
    ):
        plural = "test is" if tests.failed == 1 else f"{tests.failed} tests are"
        note = (
            f"succeeded although its script failed (exit {event.exit_code}): the failing {plural} quarantined"
        )
        verdict = _Verdict(AttemptStatus.SUCCEEDED, None, None, note)
    minimum = stage.coverage_min
    if verdict.status == AttemptStatus.SUCCEEDED and minimum is not None:
        if event.line_rate is None:
            reason = f"coverage.min is {minimum:g} % but no line coverage was measured (see reports.coverage)"
            return _Verdict(AttemptStatus.FAILED, FailureKind.COVERAGE, reason, verdict.note)
        if event.line_rate * 100 < minimum - 1e-9:
            reason = f"line coverage {event.line_rate * 100:.2f} % is below the minimum of {minimum:g} %"
            return _Verdict(AttemptStatus.FAILED, FailureKind.COVERAGE, reason, verdict.note)
    return verdict


def _cancel(state: RunState, event: CancelRequested, now: datetime) -> Decision:
    if state.status in RUN_TERMINAL:
        return _ignored(state, f"run is already {state.status}")
    if state.cancel_requested_at is not None:
        return _ignored(state, "cancel already requested")
    stages = dict(state.stages)
    to_stop: list[str] = []
    for name, stage in state.stages.items():
        if stage.status in (StageStatus.PENDING, StageStatus.WAITING_APPROVAL, StageStatus.QUEUED):
            stages[name] = _set_stage(stage, StageStatus.CANCELLED, now, failure_kind=FailureKind.CANCELLED)
        if stage.status in _ACTIVE:
            to_stop.append(name)
    new = dataclasses.replace(state, stages=stages, cancel_requested_at=now, failure_reason=event.reason)
    commands: tuple[Command, ...] = (CancelAttempts(tuple(to_stop)),) if to_stop else ()
    decision = _advance(new, now)
    return Decision(decision.state, (*commands, *decision.commands))


def _retry(state: RunState, now: datetime) -> Decision:
    if state.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
        return _ignored(state, f"only a failed or cancelled run can be retried, this one is {state.status}")
    if not state.stages:
        return _ignored(state, "the run was never planned; trigger a new run instead")
    stages = {
        name: (
            _set_stage(stage, StageStatus.PENDING, now)
            if stage.status in (StageStatus.FAILED, StageStatus.CANCELLED, StageStatus.SKIPPED)
            else stage
        )
        for name, stage in state.stages.items()
    }
    new = _set_run(
        state,
        RunStatus.QUEUED,
        now,
        stages=stages,
        failure_reason=None,
        cancel_requested_at=None,
        retries=state.retries + 1,
    )
    return _advance(new, now)


def _approved(state: RunState, event: Approved, now: datetime) -> Decision:
    stage = state.stages.get(event.stage)
    if stage is None or stage.status is not StageStatus.WAITING_APPROVAL:
        return _ignored(state, f"stage {event.stage} is not waiting for approval")
    if state.cancel_requested_at is not None:
        return _ignored(state, "run is being cancelled")
    if deployments.is_open(state.deployments.get(stage.name)):
        # A deploying stage's gate is its deployment's: approvals come as `deployment.reviewed`.
        return _ignored(state, f"stage {event.stage} deploys: its approvals are its deployment's reviews")
    if not stage.spec.get("script"):
        updated = _set_stage(_set_stage(stage, StageStatus.QUEUED, now), StageStatus.RUNNING, now)
        return _advance(_with_stage(state, _set_stage(updated, StageStatus.SUCCEEDED, now)), now)
    queued, dispatch = _queue(stage, now)
    decision = _advance(_with_stage(state, queued), now)
    return Decision(decision.state, (dispatch, *decision.commands))


def _with_deployment(
    state: RunState, deployment: DeploymentState, move: deployments.StageMove | None, now: datetime
) -> RunState:
    new = dataclasses.replace(state, deployments={**state.deployments, deployment.stage: deployment})
    if move is None:
        return new
    stage = new.stages[deployment.stage]
    return _with_stage(new, _set_stage(stage, move.status, now, **move.changes))


def _deployment_reviewed(state: RunState, event: DeploymentReviewedInput, now: datetime) -> Decision:
    deployment = deployments.find(state, event.deployment_id)
    refusal = deployments.review_refusal(state, deployment, event.user_id, event.decision)
    if refusal is not None or deployment is None:
        return _ignored(state, f"{event.decision} review: {refusal}")
    if state.cancel_requested_at is not None:
        return _ignored(state, "run is being cancelled")
    review = Review(event.user_id, event.decision, event.comment, event.at)
    updated, move = deployments.reviewed(
        deployment, state.stages[deployment.stage], review, event.reviewer, now
    )
    return _advance(_with_deployment(state, updated, move, now), now)


def _deployment_timer(state: RunState, event: DeploymentTimerInput) -> Decision:
    deployment = deployments.find(state, event.deployment_id)
    if deployment is None or deployment.status != "waiting":
        return _ignored(state, f"timer of deployment {event.deployment_id}: it is not waiting")
    updated, move = deployments.hold(deployment, state.stages[deployment.stage], event.at)
    if updated == deployment and move is None:
        return Decision(state)  # not due yet: nothing changes
    return _advance(_with_deployment(state, updated, move, event.at), event.at)


def _environment_granted(state: RunState, event: EnvironmentGranted, now: datetime) -> Decision:
    deployment = deployments.find(state, event.deployment_id)
    if deployment is None or deployment.status != "waiting" or deployment.ready_at is None:
        return _ignored(
            state, f"deployment {event.deployment_id} is not ready and waiting for its environment"
        )
    if state.cancel_requested_at is not None or state.status in RUN_TERMINAL:
        return _ignored(state, "run is being cancelled")
    stage = state.stages[deployment.stage]
    if not stage.spec.get("script"):
        # A pure gate: passing it is the deployment.
        updated = _set_stage(_set_stage(stage, StageStatus.QUEUED, now), StageStatus.RUNNING, now)
        return _advance(_with_stage(state, _set_stage(updated, StageStatus.SUCCEEDED, now)), now)
    queued, dispatch = _queue(stage, now)
    decision = _advance(_with_stage(state, queued), now)
    return Decision(decision.state, (dispatch, *decision.commands))


# -- the DAG -------------------------------------------------------------------------------------
def _advance(state: RunState, now: datetime) -> Decision:
    """Start every stage whose needs are all finished (maximal parallelism), then finish the run
    when nothing is left to do."""
    if state.status in RUN_TERMINAL:
        return Decision(state)
    if state.waiting_for_group and state.cancel_requested_at is None:
        return Decision(state)
    stages = dict(state.stages)
    opened = dict(state.deployments)
    commands: list[Command] = []
    changed = True
    while changed:  # skipping a stage can settle its dependents in the same pass
        changed = False
        for name in list(stages):
            stage = stages[name]
            if stage.status is not StageStatus.PENDING:
                continue
            needs = {n: stages[n] for n in stage.needs if n in stages}
            if any(s.status not in STAGE_TERMINAL for s in needs.values()):
                continue
            if deployments.is_open(opened.get(name)) and state.cancel_requested_at is None:
                continue  # its deployment holds it (approvals, a wait timer, its environment)
            changed = True
            if state.cancel_requested_at is not None:
                stages[name] = _set_stage(
                    stage, StageStatus.CANCELLED, now, failure_kind=FailureKind.CANCELLED
                )
                continue
            run_it, why = stage_should_run(stage, needs, state)
            if not run_it:
                needs_failed = any(
                    (s.status in (StageStatus.FAILED, StageStatus.CANCELLED) and not s.allow_failure)
                    or s.failure_kind == FailureKind.NEEDS_FAILED
                    for s in needs.values()
                )
                kind = FailureKind.NEEDS_FAILED.value if needs_failed else None
                stages[name] = _set_stage(
                    stage, StageStatus.SKIPPED, now, failure_reason=why, failure_kind=kind
                )
            elif stage.spec.get("environment"):
                deployment, move = deployments.begin(
                    dataclasses.replace(state, deployments=opened), stage, now
                )
                opened[name] = deployment
                if move is not None:
                    stages[name] = _set_stage(stage, move.status, now, **move.changes)
            elif stage.spec.get("approval"):
                stages[name] = _set_stage(stage, StageStatus.WAITING_APPROVAL, now)
            else:
                stages[name], dispatch = _queue(stage, now)
                commands.append(dispatch)
    new = dataclasses.replace(state, stages=stages, deployments=opened)
    return Decision(_maybe_finish(new, now), tuple(commands))


def _maybe_finish(state: RunState, now: datetime) -> RunState:
    if any(s.status not in STAGE_TERMINAL for s in state.stages.values()):
        return state
    if state.cancel_requested_at is not None:
        return _set_run(state, RunStatus.CANCELLED, now, failure_reason=state.failure_reason or "cancelled")
    failed = [s for s in state.stages.values() if s.status is StageStatus.FAILED and not s.allow_failure]
    if failed:
        first = failed[0]
        reason = f"stage {first.name} failed" + (f": {first.failure_reason}" if first.failure_reason else "")
        return _set_run(state, RunStatus.FAILED, now, failure_reason=reason)
    cancelled = [s for s in state.stages.values() if s.status is StageStatus.CANCELLED]
    if cancelled:
        return _set_run(
            state, RunStatus.CANCELLED, now, failure_reason=f"stage {cancelled[0].name} was cancelled"
        )
    return _set_run(state, RunStatus.SUCCEEDED, now)
