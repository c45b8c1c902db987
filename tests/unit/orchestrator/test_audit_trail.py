"""The audit of a run's history: a history written the way the orchestrator shell writes it (by
today's decide()) is found deterministic; a recorded decision today's code would not take is
flagged at its step; inputs not applied yet are shown, not re-run; the order the shell applied
inputs in comes from their outputs."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

from events.envelope import Envelope, new_envelope
from orchestrator.audit_trail import RecordedEvent, RunPlan, audit, first_state, planning_input
from orchestrator.decide import decide
from orchestrator.inputs import input_of
from orchestrator.model import DispatchAttempt, Input, PlanFailed, Planned, RunState, StageState
from orchestrator.status_events import status_changes
from schemas.events import (
    AttemptDispatched,
    AttemptFinished,
    AttemptStarted,
    EventPayload,
    RunCancelRequested,
    RunChanged,
    RunNote,
    RunRequested,
    StageStatusChanged,
)
from schemas.states import StageStatus

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
RUN = uuid.UUID("01900000-0000-7000-8000-000000000001")
PROJECT = uuid.uuid4()


def _stage(name: str, *needs: str, position: int = 0, **spec: object) -> StageState:
    return StageState(
        name=name, status=StageStatus.PENDING, needs=needs, spec={"script": "true", **spec}, position=position
    )


PLAN = RunPlan(
    sha="c" * 40,
    stages=(
        _stage("build", position=0),
        _stage("unit", "build", position=1, retry={"count": 1}),
        _stage("lint", "build", position=2),
        _stage("deploy", "unit", "lint", position=3),
    ),
)


class Shell:
    """Writes a history the way orchestrator/handlers.py does: each input, then the decision's
    note, status changes and immediate dispatches, caused by it; the clock runs a second per step."""

    def __init__(self, plan: RunPlan = PLAN) -> None:
        self.plan = plan
        self.history: list[RecordedEvent] = []
        self.applied: set[uuid.UUID] = set()
        self.state: RunState | None = None
        self.now = T0
        self.attempts: dict[tuple[str, int], uuid.UUID] = {}

    def _write(self, payload: EventPayload, cause: Envelope | None = None) -> Envelope:
        env = new_envelope(
            payload,
            key=str(RUN),
            causation_id=str(cause.event_id) if cause else None,
            occurred_at=self.now,
        )
        self.history.append(RecordedEvent(len(self.history) + 1, env))
        return env

    def written(self, payload: EventPayload) -> Envelope:
        """An input written to the history (not applied yet)."""
        return self._write(payload)

    def apply(self, env: Envelope, step_input: Input | None = None) -> None:
        self.now += timedelta(seconds=1)
        self.applied.add(env.event_id)
        if step_input is None:
            converted = input_of(env, {})
            assert converted is not None
            step_input = converted[1]
        if self.state is None:
            requested = env.typed()
            assert isinstance(requested, RunRequested)
            self.state = first_state(requested)
        decision = decide(self.state, step_input, self.now)
        # The shell writes the batch's rows first (run.changed), then the decision's outputs.
        self._write(RunChanged(run_id=RUN, at=self.now), env)
        if decision.note:
            self._write(RunNote(run_id=RUN, note=decision.note), env)
        for payload in status_changes(self.state, decision.state, self.now):
            self._write(payload, env)
        for command in decision.commands:
            if isinstance(command, DispatchAttempt) and command.delay_s == 0:
                self._write(
                    AttemptDispatched(
                        run_id=RUN,
                        stage_id=uuid.uuid4(),
                        attempt_id=self._attempt(command.stage, command.number),
                        stage=command.stage,
                        number=command.number,
                        pool=command.pool,
                    ),
                    env,
                )
        self.state = decision.state

    def _attempt(self, stage: str, number: int) -> uuid.UUID:
        return self.attempts.setdefault((stage, number), uuid.uuid4())

    # -- inputs ------------------------------------------------------------------------------
    def request(self) -> None:
        env = self.written(RunRequested(run_id=RUN, project_id=PROJECT, number=1, ref="refs/heads/main"))
        stages = tuple(self.plan.stages)
        self.apply(env, Planned(sha=self.plan.sha or "", stages=stages))

    def started(self, stage: str, number: int = 1) -> Envelope:
        return self.written(
            AttemptStarted(
                run_id=RUN,
                stage_id=uuid.uuid4(),
                attempt_id=self._attempt(stage, number),
                stage=stage,
                number=number,
                worker_id="w1",
                fencing_token=1,
                started_at=self.now,
            )
        )

    def finished(self, stage: str, number: int = 1, status: str = "succeeded") -> Envelope:
        return self.written(
            AttemptFinished(
                run_id=RUN,
                stage_id=uuid.uuid4(),
                attempt_id=self._attempt(stage, number),
                stage=stage,
                number=number,
                status=status,
                exit_code=0 if status == "succeeded" else 1,
                failure_kind=None if status == "succeeded" else "script_failure",
                started_at=self.now,
                finished_at=self.now,
            )
        )

    def runs(self, stage: str, number: int = 1, status: str = "succeeded") -> None:
        self.apply(self.started(stage, number))
        self.apply(self.finished(stage, number, status))

    def check(self) -> list[str]:
        result = audit(RUN, self.history, self.plan, self.applied)
        return [f"{s.event_type}:{s.same}" for s in result.steps if s.kind == "input"]


def busy_run() -> Shell:
    shell = Shell()
    shell.request()
    shell.runs("build")
    shell.runs("unit", 1, "failed")  # retried: unit#2
    shell.runs("lint")
    shell.runs("unit", 2)
    shell.runs("deploy")
    return shell


def test_a_history_written_by_todays_decide_is_found_deterministic() -> None:
    shell = busy_run()
    result = audit(RUN, shell.history, shell.plan, shell.applied)
    assert result.deterministic
    inputs = [s for s in result.steps if s.kind == "input"]
    assert len(inputs) == 11
    assert len(result.steps) == 11  # the rows each decision wrote (run.changed) are not steps
    assert all(s.same for s in inputs)
    assert "run: running → succeeded" in inputs[-1].recorded.describe()
    # The retry is a decision of its own: unit#1 failed, unit#2 queued and dispatched at once.
    retry = next(s for s in inputs if s.summary == "unit#1 finished: failed (exit 1, script_failure)")
    assert "stage unit: running → queued (attempt 2, exit 1)" in retry.recorded.changes
    assert retry.recorded.dispatches == ("unit#2 to pool default",)


def test_a_recorded_decision_todays_code_would_not_take_is_flagged_at_its_step() -> None:
    shell = busy_run()
    # Tamper with the record: unit#1's failure was recorded as failing the stage (no retry).
    tampered: list[RecordedEvent] = []
    for original in shell.history:
        e = original
        p = e.envelope.typed()
        if (
            isinstance(p, StageStatusChanged)
            and p.stage == "unit"
            and p.attempt == 2
            and p.status == "queued"
        ):
            changed = p.model_copy(update={"status": "failed", "attempt": 1})
            e = RecordedEvent(
                e.seq, e.envelope.model_copy(update={"payload": changed.model_dump(mode="json")})
            )
        tampered.append(e)
    result = audit(RUN, tampered, shell.plan, shell.applied)
    assert not result.deterministic
    first = result.differences[0]
    assert first.summary == "unit#1 finished: failed (exit 1, script_failure)"
    assert first.after_difference is False
    assert first.today is not None
    assert "stage unit: running → queued (attempt 2, exit 1)" in first.today.changes
    assert "stage unit: running → failed (attempt 1, exit 1)" in first.recorded.changes
    assert all(s.after_difference for s in result.differences[1:])


def test_a_differing_note_is_a_difference() -> None:
    shell = busy_run()
    late = shell.started("build")  # a stale duplicate start: decide() ignores it with a note
    shell.apply(late)
    history = [
        RecordedEvent(
            e.seq, e.envelope.model_copy(update={"payload": {**e.envelope.payload, "note": "other"}})
        )
        if e.envelope.type == "run.note"
        else e
        for e in shell.history
    ]
    assert audit(RUN, shell.history, shell.plan, shell.applied).deterministic
    flagged = audit(RUN, history, shell.plan, shell.applied).differences
    assert [s.event_id for s in flagged] == [late.event_id]


def test_an_input_not_applied_yet_is_shown_and_not_re_run() -> None:
    shell = Shell()
    shell.request()
    shell.runs("build")
    waiting = shell.started("unit")  # written by a worker; the orchestrator has not applied it
    result = audit(RUN, shell.history, shell.plan, shell.applied)
    step = next(s for s in result.steps if s.event_id == waiting.event_id)
    assert (step.kind, step.today, step.same) == ("pending", None, None)
    assert result.deterministic


def test_inputs_are_re_run_in_the_order_the_shell_applied_them_not_the_order_they_were_written() -> None:
    shell = Shell()
    shell.request()
    shell.apply(shell.started("build"))
    result_written_first = shell.finished("build", 1, "failed")
    cancel = shell.written(RunCancelRequested(run_id=RUN, source="user", reason="stop"))
    # The cancel (another topic) was applied before the result that was written earlier.
    shell.apply(cancel)
    shell.apply(result_written_first)
    result = audit(RUN, shell.history, shell.plan, shell.applied)
    assert result.deterministic
    order = [s.event_id for s in result.steps if s.kind == "input"]
    assert order.index(cancel.event_id) < order.index(result_written_first.event_id)
    assert shell.state is not None
    assert shell.state.status.value == "cancelled"


def test_a_cancel_with_no_recorded_output_still_changes_what_follows() -> None:
    """Cancelling a running stage writes no event (its worker is told through Postgres): the cancel
    must still be re-run, or the result after it would be judged a plain failure."""
    plan = RunPlan(sha="c" * 40, stages=(_stage("build"),))
    shell = Shell(plan)
    shell.request()
    shell.apply(shell.started("build"))
    failed = shell.finished("build", 1, "failed")  # written first, applied after the cancel
    cancel = shell.written(RunCancelRequested(run_id=RUN, source="user", reason="stop"))
    shell.apply(cancel)
    shell.apply(failed)
    result = audit(RUN, shell.history, plan, shell.applied)
    step = next(s for s in result.steps if s.event_id == cancel.event_id)
    assert step.recorded.changes == ()
    assert step.today is not None
    assert step.today.unrecorded == ("stop build",)
    assert result.deterministic
    assert "stage build: running → cancelled (attempt 1, exit 1)" in result.steps[-1].recorded.changes


def test_a_retry_backoff_dispatch_is_shown_but_not_compared() -> None:
    plan = RunPlan(sha="c" * 40, stages=(_stage("flaky", retry={"count": 1, "backoff_s": 5}),))
    shell = Shell(plan)
    shell.request()
    shell.runs("flaky", 1, "failed")
    result = audit(RUN, shell.history, plan, shell.applied)
    retry = [s for s in result.steps if s.kind == "input"][-1]
    assert retry.today is not None
    assert retry.today.unrecorded == ("dispatch flaky#2 to pool default after 5s",)
    assert result.deterministic


def test_the_planning_step_is_admitted_as_recorded() -> None:
    plan = dataclasses.replace(PLAN, concurrency_group="deploy-prod")
    # Held back by its group: every stage recorded pending.
    held = Shell(plan)
    env = held.written(RunRequested(run_id=RUN, project_id=PROJECT, number=1, ref="refs/heads/main"))
    held.apply(
        env, Planned(sha="c" * 40, stages=plan.stages, concurrency_group="deploy-prod", admission="wait")
    )
    outputs = [e for e in held.history if e.envelope.causation_id == str(env.event_id)]
    waiting = planning_input(plan, outputs)
    assert isinstance(waiting, Planned)
    assert waiting.admission == "wait"
    assert audit(RUN, held.history, plan, held.applied).deterministic
    # Refused: the planning failed the run with the group's reason.
    refused = Shell(plan)
    env = refused.written(RunRequested(run_id=RUN, project_id=PROJECT, number=1, ref="refs/heads/main"))
    refused.apply(
        env,
        Planned(
            sha="c" * 40,
            stages=plan.stages,
            concurrency_group="deploy-prod",
            admission="refuse",
            refusal="full",
        ),
    )
    outputs = [e for e in refused.history if e.envelope.causation_id == str(env.event_id)]
    refusal = planning_input(plan, outputs)
    assert isinstance(refusal, Planned)
    assert (refusal.admission, refusal.refusal) == ("refuse", "full")
    assert audit(RUN, refused.history, plan, refused.applied).deterministic


def test_a_run_whose_plan_failed_is_re_decided_from_the_recorded_reason() -> None:
    no_stages = RunPlan(sha="c" * 40, stages=())
    shell = Shell(no_stages)
    env = shell.written(RunRequested(run_id=RUN, project_id=PROJECT, number=1, ref="refs/heads/main"))
    shell.apply(env, PlanFailed(".comet.yml line 3: unknown field", "c" * 40))
    outputs = [e for e in shell.history if e.envelope.causation_id == str(env.event_id)]
    assert planning_input(no_stages, outputs) == PlanFailed(".comet.yml line 3: unknown field", "c" * 40)
    result = audit(RUN, shell.history, no_stages, shell.applied)
    assert result.deterministic
    assert result.steps[0].recorded.changes == ("run: requested → failed: .comet.yml line 3: unknown field",)


def test_each_step_is_decided_at_the_time_recorded_with_it() -> None:
    shell = busy_run()
    result = audit(RUN, shell.history, shell.plan, shell.applied)
    inputs = [s for s in result.steps if s.kind == "input"]
    # The shell's clock ran a second per step; the audit's times are the recorded ones.
    assert [s.decided_at for s in inputs] == [T0 + timedelta(seconds=n) for n in range(1, 12)]
