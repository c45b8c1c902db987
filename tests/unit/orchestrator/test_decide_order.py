"""decide() is order-independent: a run reaches the right state whatever order its events arrive
in, duplicated or stale, and never raises on runtime input.

Kafka keeps one partition in order, but one run's events are written by several processes (the
API, the orchestrator, every worker, the reaper) and published by several relays: a result can
overtake its own start, a retried send can land after a newer one, a relay can publish twice.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.decide import decide
from orchestrator.model import (
    Approved,
    AttemptFinishedInput,
    AttemptStartedInput,
    CancelRequested,
    DispatchAttempt,
    GroupReleased,
    Input,
    PlanFailed,
    Planned,
    RetryRequested,
    RunState,
    StageState,
)
from schemas.states import RunStatus, StageStatus

NOW = datetime(2026, 1, 1, tzinfo=UTC)
S = StageStatus
T0 = datetime(2025, 12, 31, 23, 0, tzinfo=UTC)


def _stage(
    name: str, *needs: str, status: StageStatus = S.PENDING, attempt: int = 0, **spec: object
) -> StageState:
    return StageState(name=name, status=status, needs=needs, spec={"script": "true", **spec}, attempt=attempt)


def _run(status: RunStatus, *stages: StageState) -> RunState:
    return RunState(
        id=uuid.UUID(int=1),
        project_id=uuid.UUID(int=2),
        status=status,
        ref="refs/heads/main",
        sha="a" * 40,
        stages={s.name: s for s in stages},
    )


def _started(stage: str, number: int) -> datetime:
    """The (worker's) start time of an attempt: distinct per stage and attempt, and deterministic."""
    return T0 + timedelta(seconds=10 * number, milliseconds=sum(map(ord, stage)))


def _finished(stage: str, number: int, status: str) -> AttemptFinishedInput:
    begun = _started(stage, number)
    return AttemptFinishedInput(
        stage,
        number,
        status,
        exit_code=0 if status == "succeeded" else 1,
        failure_kind=None if status == "succeeded" else "script_failure",
        started_at=begun,
        finished_at=begun + timedelta(seconds=1),
    )


def _start(stage: str, number: int) -> AttemptStartedInput:
    return AttemptStartedInput(stage, number, "w1", started_at=_started(stage, number))


# -- cases ---------------------------------------------------------------------------------------
def test_a_result_that_overtook_its_start_runs_and_finishes_the_stage_with_the_workers_times() -> None:
    state = _run(RunStatus.QUEUED, _stage("a", status=S.QUEUED, attempt=1), _stage("b", "a"))
    d = decide(state, _finished("a", 1, "succeeded"), NOW)
    a = d.state.stages["a"]
    assert a.status is S.SUCCEEDED
    assert a.started_at == _started("a", 1)
    assert a.finished_at == _started("a", 1) + timedelta(seconds=1)
    assert d.state.status is RunStatus.RUNNING
    assert d.state.started_at == _started("a", 1)
    assert d.commands == (DispatchAttempt("b", 1, "default"),)


def test_the_late_start_of_a_finished_attempt_changes_nothing_and_says_why() -> None:
    state = _run(RunStatus.QUEUED, _stage("a", status=S.QUEUED, attempt=1), _stage("b", "a"))
    finished = decide(state, _finished("a", 1, "succeeded"), NOW).state
    d = decide(finished, _start("a", 1), NOW)
    assert d.state == finished
    assert d.commands == ()
    assert "arrived with the stage already succeeded" in d.note


def test_a_failed_result_before_its_start_still_retries_and_the_old_start_is_stale() -> None:
    state = _run(RunStatus.QUEUED, _stage("a", status=S.QUEUED, attempt=1, retry={"count": 1}))
    d = decide(state, _finished("a", 1, "failed"), NOW)
    assert d.state.stages["a"].status is S.QUEUED
    assert d.state.stages["a"].attempt == 2
    assert d.commands == (DispatchAttempt("a", 2, "default"),)
    late = decide(d.state, _start("a", 1), NOW)
    assert late.state == d.state
    assert "stale" in late.note


def test_a_result_of_an_earlier_attempt_is_ignored_as_stale() -> None:
    state = _run(RunStatus.RUNNING, _stage("a", status=S.RUNNING, attempt=2, retry={"count": 2}))
    d = decide(state, _finished("a", 1, "succeeded"), NOW)
    assert d.state == state
    assert "stale" in d.note


def test_a_cancel_that_raced_a_success_ends_the_run_cancelled_with_the_stage_succeeded() -> None:
    state = _run(RunStatus.RUNNING, _stage("a", status=S.RUNNING, attempt=1), _stage("b", "a"))
    cancelling = decide(state, CancelRequested("stop"), NOW).state
    d = decide(cancelling, _finished("a", 1, "succeeded"), NOW)
    assert d.state.stages["a"].status is S.SUCCEEDED
    assert d.state.stages["b"].status is S.CANCELLED
    assert d.state.status is RunStatus.CANCELLED
    assert d.commands == ()


def test_a_cancel_after_the_last_result_is_ignored() -> None:
    state = _run(RunStatus.RUNNING, _stage("a", status=S.RUNNING, attempt=1))
    done = decide(state, _finished("a", 1, "succeeded"), NOW).state
    assert done.status is RunStatus.SUCCEEDED
    d = decide(done, CancelRequested("too late"), NOW)
    assert d.state == done
    assert "already succeeded" in d.note


def test_a_transition_the_table_refuses_is_a_note_never_an_exception() -> None:
    # An inconsistent state (a running stage in a run that was never planned): finishing the stage
    # would finish the run straight from `requested`, which the table refuses.
    state = _run(RunStatus.REQUESTED, _stage("a", status=S.RUNNING, attempt=1))
    d = decide(state, _finished("a", 1, "succeeded"), NOW)
    assert d.state == state
    assert d.commands == ()
    assert d.note.startswith("ignored: AttemptFinishedInput refused: illegal run transition")


# -- properties ----------------------------------------------------------------------------------
@st.composite
def pipelines(draw: st.DrawFn) -> tuple[StageState, ...]:
    """A small DAG: each stage may need some earlier ones, and may be retried up to twice."""
    count = draw(st.integers(1, 5))
    stages = []
    for i in range(count):
        needs = tuple(
            sorted(draw(st.sets(st.sampled_from([f"s{j}" for j in range(i)]) if i else st.nothing())))
        )
        retry = draw(st.integers(0, 2))
        stages.append(_stage(f"s{i}", *needs, retry={"count": retry}, allow_failure=draw(st.booleans())))
    for position, s in enumerate(stages):
        stages[position] = dataclasses.replace(s, position=position)
    return tuple(stages)


def _outcome(outcomes: dict[tuple[str, int], bool], stage: str, number: int) -> str:
    return "succeeded" if outcomes.get((stage, number), True) else "failed"


def _execute(
    stages: tuple[StageState, ...],
    outcomes: dict[tuple[str, int], bool],
    choose: Iterator[int] | None,
    duplicate: Iterator[bool] | None,
) -> RunState:
    """Run the pipeline to its end through decide(): each dispatched attempt yields its start and
    its result. Without `choose`, events are applied in the order they were caused, each start
    before its result; with it, any event already caused may go next (a result before its start),
    and with `duplicate`, events already applied are delivered again at random points."""
    queue: list[Input] = []
    applied: list[Input] = []

    def caused(commands: tuple[object, ...]) -> None:
        for c in commands:
            if isinstance(c, DispatchAttempt):
                queue.extend(
                    [
                        _start(c.stage, c.number),
                        _finished(c.stage, c.number, _outcome(outcomes, c.stage, c.number)),
                    ]
                )

    planned = decide(_run(RunStatus.REQUESTED), Planned(sha="b" * 40, stages=stages), NOW)
    state = planned.state
    caused(planned.commands)
    while queue:
        index = 0 if choose is None else next(choose) % len(queue)
        event = queue.pop(index)
        d = decide(state, event, NOW)
        state = d.state
        applied.append(event)
        caused(d.commands)
        if choose is not None and duplicate is not None and next(duplicate):
            again = decide(state, applied[next(choose) % len(applied)], NOW)
            assert again.commands == (), "a duplicate caused work"
            state = again.state
    return state


@settings(max_examples=300, deadline=None)
@given(
    stages=pipelines(),
    failures=st.sets(st.tuples(st.sampled_from([f"s{i}" for i in range(5)]), st.integers(1, 3))),
    choices=st.lists(st.integers(0, 1000), min_size=200, max_size=200),
    duplicates=st.lists(st.booleans(), min_size=200, max_size=200),
)
def test_any_causal_order_with_duplicates_ends_in_the_state_of_the_ordered_sequence(
    stages: tuple[StageState, ...],
    failures: set[tuple[str, int]],
    choices: list[int],
    duplicates: list[bool],
) -> None:
    outcomes = dict.fromkeys(failures, False)
    ordered = _execute(stages, outcomes, None, None)
    shuffled = _execute(stages, outcomes, iter(choices * 10), iter(duplicates * 10))
    assert ordered.status in (RunStatus.SUCCEEDED, RunStatus.FAILED)
    assert shuffled == ordered


_ANY_INPUT = st.one_of(
    st.builds(
        AttemptStartedInput,
        stage=st.sampled_from(["s0", "s1", "s2", "zzz"]),
        number=st.integers(0, 4),
        worker_id=st.just("w"),
        started_at=st.none() | st.just(T0),
    ),
    st.builds(
        AttemptFinishedInput,
        stage=st.sampled_from(["s0", "s1", "s2", "zzz"]),
        number=st.integers(0, 4),
        status=st.sampled_from(["succeeded", "failed", "cancelled", "lost", "nonsense"]),
        failure_kind=st.sampled_from([None, "script_failure", "lost_worker", "timeout"]),
        started_at=st.none() | st.just(T0),
        finished_at=st.none() | st.just(T0),
    ),
    st.builds(CancelRequested),
    st.builds(RetryRequested),
    st.builds(GroupReleased),
    st.builds(Approved, stage=st.sampled_from(["s0", "s1", "zzz"])),
    st.builds(PlanFailed, reason=st.just("broken")),
    st.builds(Planned, sha=st.just("c" * 40), stages=st.just((_stage("s0"), _stage("s1", "s0")))),
)


@settings(max_examples=500, deadline=None)
@given(stages=pipelines(), events=st.lists(_ANY_INPUT, max_size=40))
def test_decide_never_raises_whatever_it_is_fed(stages: tuple[StageState, ...], events: list[Input]) -> None:
    state = _run(RunStatus.REQUESTED)
    for event in [Planned(sha="b" * 40, stages=stages), *events]:
        d = decide(state, event, NOW)
        assert isinstance(d.state, RunState)
        state = d.state
