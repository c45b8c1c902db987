"""The audit of one run's history (`comet replay run`): its timeline, each input with the decision
the orchestrator took, and whether today's `decide()` takes the same decision (a non-determinism
check). Pure: the caller reads the history, the plan and the inbox; nothing here does I/O.

How a recorded decision is found: the orchestrator shell writes a decision's outputs (status
changes, its note, immediate dispatches) in the same transaction, each with the input's event id as
its `causation_id`. So an input's recorded decision is the outputs it caused, and the order the
shell applied inputs in is the order of those outputs in the outbox (an input with no output is
placed by its own position: it was applied after it was written and before any later output).

What is re-run: the run's state is rebuilt by folding today's `decide()` over the recorded inputs
from the run's first state, each at the time its recorded decision was taken (the `at` of its
status changes, else when its outputs were written; never the clock). What the shell decided
outside `decide()` is taken from the record: the plan read from `.comet.yml` (kept in the stages
rows) and the concurrency group's admission (seen in what the planning step did). Inputs the
orchestrator has not applied yet (not in its inbox, no output) are shown and not re-run.

Compared: status changes (stage or run, from → to, attempt, exit code, failure reason), the note,
and immediate dispatches. Not compared (not recorded as events): cancel commands, and dispatches
delayed by a retry backoff (the lease reaper sends those later, with no cause).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from events.envelope import Envelope
from orchestrator.decide import decide
from orchestrator.inputs import INPUT_TYPES, input_of
from orchestrator.model import (
    CancelAttempts,
    Decision,
    DispatchAttempt,
    Input,
    PlanFailed,
    Planned,
    RunState,
    StageState,
)
from orchestrator.status_events import status_changes
from schemas.events import (
    AttemptDispatched,
    AttemptFinished,
    AttemptStarted,
    EventPayload,
    RunCancelRequested,
    RunChanged,
    RunGroupReleased,
    RunNote,
    RunRequested,
    RunStatusChanged,
    StageApproved,
    StageStatusChanged,
)
from schemas.states import RunStatus, StageStatus

# Event types the shell writes as a decision's outputs, caused by the input decided on.
OUTPUT_TYPES = frozenset(
    {StageStatusChanged.TYPE, RunStatusChanged.TYPE, RunNote.TYPE, AttemptDispatched.TYPE}
)
# Left out of the timeline: the rows a batch of decisions wrote (one per run and transaction, caused
# by the batch's last input; the decisions' own outputs say the same, per decision).
ROW_TYPES = frozenset({RunChanged.TYPE})


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event of the run's history: its position in the outbox and its (upcast) envelope."""

    seq: int
    envelope: Envelope


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What the shell read from `.comet.yml` when it planned the run, as the runs and stages rows
    keep it (the stages' static parts; their statuses are not used)."""

    sha: str | None
    stages: tuple[StageState, ...]
    pipeline_name: str | None = None
    concurrency_group: str | None = None
    variables: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A decision in comparable form: status changes, immediate dispatches, the note."""

    changes: tuple[str, ...] = ()
    dispatches: tuple[str, ...] = ()
    note: str = ""
    # Shown, never compared (not recorded as events): delayed dispatches, cancel commands.
    unrecorded: tuple[str, ...] = ()

    def comparable(self) -> tuple[tuple[str, ...], tuple[str, ...], str]:
        return tuple(sorted(self.changes)), tuple(sorted(self.dispatches)), self.note

    def describe(self) -> str:
        parts = [*self.changes, *(f"dispatch {d}" for d in self.dispatches)]
        parts += self.unrecorded
        if self.note:
            parts.append(f"note: {self.note}")
        return "; ".join(parts) or "no change"


@dataclass(frozen=True, slots=True)
class Step:
    seq: int
    event_id: uuid.UUID
    event_type: str
    occurred_at: datetime
    summary: str
    # "input": decide() ran on it; "pending": an input the orchestrator has not applied yet;
    # "event": no input (e.g. a dispatch the lease reaper sent after a retry's backoff).
    kind: str
    recorded: Outcome = Outcome()
    decided_at: datetime | None = None
    today: Outcome | None = None
    # None when not compared; after_difference: an earlier step already differed, so today's
    # state is not the recorded one any more and later differences may only follow from it.
    same: bool | None = None
    after_difference: bool = False


@dataclass(frozen=True, slots=True)
class Audit:
    run_id: uuid.UUID
    steps: tuple[Step, ...]

    @property
    def differences(self) -> list[Step]:
        return [s for s in self.steps if s.same is False]

    @property
    def deterministic(self) -> bool:
        return not self.differences


# -- describing events and decisions -------------------------------------------------------------
def change_line(payload: EventPayload) -> str:
    """One status change as a line, the same for a recorded event and one computed today."""
    if isinstance(payload, StageStatusChanged):
        line = f"stage {payload.stage}: {payload.previous or 'new'} → {payload.status} (attempt {payload.attempt}"
        if payload.exit_code is not None:
            line += f", exit {payload.exit_code}"
        line += ")"
        return line + (f": {payload.failure_reason}" if payload.failure_reason else "")
    if isinstance(payload, RunStatusChanged):
        line = f"run: {payload.previous or 'new'} → {payload.status}"
        return line + (f": {payload.failure_reason}" if payload.failure_reason else "")
    return payload.event_type()


def _dispatch_line(stage: str, number: int, pool: str) -> str:
    return f"{stage}#{number} to pool {pool}"


def summarize(envelope: Envelope) -> str:
    """What an event says, in a few words."""
    p = envelope.typed()
    match p:
        case RunRequested():
            kind = p.trigger.get("kind") or "api"
            return f"run #{p.number} requested for {p.ref}{f' at {p.sha[:12]}' if p.sha else ''} ({kind})"
        case AttemptStarted():
            return f"{p.stage}#{p.number} started on {p.worker_id}"
        case AttemptFinished():
            detail = [f"exit {p.exit_code}"] if p.exit_code is not None else []
            detail += [p.failure_kind] if p.failure_kind else []
            return f"{p.stage}#{p.number} finished: {p.status}" + (
                f" ({', '.join(detail)})" if detail else ""
            )
        case RunCancelRequested():
            return f"cancel requested: {p.reason}"
        case StageApproved():
            return f"{p.stage} approved"
        case RunGroupReleased():
            return f"concurrency group {p.group} released the run"
        case AttemptDispatched():
            return f"{_dispatch_line(p.stage, p.number, p.pool)} dispatched"
        case StageStatusChanged() | RunStatusChanged():
            return change_line(p)
        case RunNote():
            return f"note: {p.note}"
    return (
        envelope.type.replace("_", " ").replace(".", " ")
        if envelope.type != "run.retry_requested"
        else "retry requested"
    )


def recorded_outcome(outputs: Sequence[RecordedEvent]) -> Outcome:
    changes: list[str] = []
    dispatches: list[str] = []
    note = ""
    for e in outputs:
        p = e.envelope.typed()
        if isinstance(p, StageStatusChanged | RunStatusChanged):
            changes.append(change_line(p))
        elif isinstance(p, AttemptDispatched):
            dispatches.append(_dispatch_line(p.stage, p.number, p.pool))
        elif isinstance(p, RunNote):
            note = p.note
    return Outcome(tuple(changes), tuple(dispatches), note)


def todays_outcome(before: RunState, decision: Decision, now: datetime) -> Outcome:
    changes = tuple(change_line(p) for p in status_changes(before, decision.state, now))
    dispatches: list[str] = []
    unrecorded: list[str] = []
    for command in decision.commands:
        if isinstance(command, DispatchAttempt):
            line = _dispatch_line(command.stage, command.number, command.pool)
            if command.delay_s > 0:
                unrecorded.append(f"dispatch {line} after {command.delay_s:g}s")
            else:
                dispatches.append(line)
        elif isinstance(command, CancelAttempts):
            unrecorded.append(f"stop {', '.join(command.stages)}")
    return Outcome(changes, tuple(dispatches), decision.note, tuple(unrecorded))


# -- the audit -----------------------------------------------------------------------------------
def _decided_at(step_input: RecordedEvent, outputs: Sequence[RecordedEvent]) -> datetime:
    """When the decision was taken: its status changes' `at`, else when its outputs were written,
    else (no output) when the input happened."""
    for e in outputs:
        p = e.envelope.typed()
        if isinstance(p, StageStatusChanged | RunStatusChanged):
            return p.at
    if outputs:
        return outputs[0].envelope.occurred_at
    return step_input.envelope.occurred_at


def first_state(requested: RunRequested) -> RunState:
    """The run as the API (or a webhook, or a schedule) created it: requested, not planned."""
    return RunState(
        id=requested.run_id,
        project_id=requested.project_id,
        status=RunStatus.REQUESTED,
        ref=requested.ref,
        sha=requested.sha,
        variables=dict(requested.variables),
        trigger=dict(requested.trigger),
        created_by=requested.created_by,
    )


def planning_input(plan: RunPlan, outputs: Sequence[RecordedEvent]) -> Input:
    """The input the shell made of `run.requested`: its plan, admitted as its recorded outcome
    shows (refused when the planning failed the run; held back when a concurrency group left every
    stage pending; otherwise run)."""
    failed = next(
        (
            p
            for p in (e.envelope.typed() for e in outputs)
            if isinstance(p, RunStatusChanged) and p.status == RunStatus.FAILED.value
        ),
        None,
    )
    if not plan.stages:
        reason = failed.failure_reason if failed is not None else "the run could not be planned"
        return PlanFailed(reason or "the run could not be planned", plan.sha)
    stages = tuple(
        StageState(
            name=s.name,
            status=StageStatus.PENDING,
            needs=s.needs,
            pool=s.pool,
            spec=s.spec,
            position=s.position,
            base_name=s.base_name,
            matrix=s.matrix,
        )
        for s in plan.stages
    )
    stage_changes = [p for p in (e.envelope.typed() for e in outputs) if isinstance(p, StageStatusChanged)]
    admission, refusal = "run", None
    if failed is not None:
        admission, refusal = "refuse", failed.failure_reason
    elif plan.concurrency_group and all(p.status == StageStatus.PENDING.value for p in stage_changes):
        admission = "wait"
    # The run's variables are the request's over the definition's defaults: as defaults they
    # give the same result.
    return Planned(
        sha=plan.sha or "",
        stages=stages,
        pipeline_name=plan.pipeline_name,
        concurrency_group=plan.concurrency_group,
        variable_defaults=dict(plan.variables),
        admission=admission,
        refusal=refusal,
    )


def audit(
    run_id: uuid.UUID,
    history: Sequence[RecordedEvent],
    plan: RunPlan,
    applied: Collection[uuid.UUID],
) -> Audit:
    """The run's timeline with each input's recorded decision and today's; `applied` holds the ids
    of the events the orchestrator's inbox recorded."""
    inputs = [e for e in history if e.envelope.type in INPUT_TYPES]
    input_ids = {e.envelope.event_id for e in inputs}
    outputs: dict[uuid.UUID, list[RecordedEvent]] = {}
    others: list[RecordedEvent] = []
    for e in history:
        if e.envelope.event_id in input_ids or e.envelope.type in ROW_TYPES:
            continue
        cause = _cause(e.envelope)
        if e.envelope.type in OUTPUT_TYPES and cause in input_ids:
            outputs.setdefault(cause, []).append(e)
        elif e.envelope.type not in OUTPUT_TYPES or cause is None:
            others.append(e)

    def position(e: RecordedEvent) -> int:
        mine = outputs.get(e.envelope.event_id)
        return mine[0].seq if mine else e.seq

    timeline: list[tuple[int, RecordedEvent, bool]] = [(position(e), e, True) for e in inputs]
    timeline += [(e.seq, e, False) for e in others]
    timeline.sort(key=lambda t: t[0])

    requested = next((e for e in inputs if e.envelope.type == RunRequested.TYPE), None)
    state = None
    if requested is not None:
        payload = requested.envelope.typed()
        assert isinstance(payload, RunRequested)
        state = first_state(payload)
    differed = False
    steps: list[Step] = []
    for _, event, is_input in timeline:
        env = event.envelope
        base = _Base(event.seq, env.event_id, env.type, env.occurred_at, summarize(env))
        if not is_input:
            steps.append(base.step(kind="event"))
            continue
        mine = outputs.get(env.event_id, [])
        recorded = recorded_outcome(mine)
        if env.event_id not in applied and not mine:
            steps.append(base.step(kind="pending"))
            continue
        at = _decided_at(event, mine)
        step_input = _input(env, plan, mine)
        if state is None or step_input is None:
            steps.append(base.step(kind="input", recorded=recorded, decided_at=at))
            continue
        decision = decide(state, step_input, at)
        today = todays_outcome(state, decision, at)
        same = today.comparable() == recorded.comparable()
        steps.append(
            base.step(
                kind="input",
                recorded=recorded,
                decided_at=at,
                today=today,
                same=same,
                after_difference=differed,
            )
        )
        differed = differed or not same
        state = decision.state
    return Audit(run_id, tuple(steps))


@dataclass(frozen=True, slots=True)
class _Base:
    seq: int
    event_id: uuid.UUID
    event_type: str
    occurred_at: datetime
    summary: str

    def step(self, **rest: Any) -> Step:
        return Step(self.seq, self.event_id, self.event_type, self.occurred_at, self.summary, **rest)


def _cause(envelope: Envelope) -> uuid.UUID | None:
    try:
        return uuid.UUID(envelope.causation_id) if envelope.causation_id else None
    except ValueError:
        return None


def _input(envelope: Envelope, plan: RunPlan, outputs: Sequence[RecordedEvent]) -> Input | None:
    if envelope.type == RunRequested.TYPE:
        if not outputs:
            return None  # the shell found nothing to plan (its project is gone): no decision
        return planning_input(plan, outputs)
    converted = input_of(envelope, {})
    return None if converted is None else converted[1]
