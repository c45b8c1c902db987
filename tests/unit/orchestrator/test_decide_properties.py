"""Properties of decide() under a hostile delivery: a simulated world of workers and users feeds it
every event a run can see (starts and results, duplicated, reordered, stale attempts, cancels racing
results, retries of finished runs, approvals, deployments and concurrency-group releases) and checks, after every
single decision, the guarantees of ARCHITECTURE.md § Guarantees that decide() owns:

- every status change is a path of the transition table, and decide() never had to fall back on
  refusing an input it did not foresee;
- a stage is never dispatched while an attempt of it is still live (two live attempts of one stage),
  and an attempt number is never dispatched twice;
- the run ends once every attempt has ended and nothing waits for a person (approvals, deployment
  reviews, wait timers and the environment's turn come, in any order with the rest).

test_decide_order.py holds the order-independence property (any causal order with duplicates ends
in the state of the ordered sequence); this file does not repeat it.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.decide import decide
from orchestrator.model import (
    Approved,
    AttemptFinishedInput,
    AttemptStartedInput,
    CancelAttempts,
    CancelRequested,
    Decision,
    DeploymentReviewedInput,
    DeploymentTimerInput,
    DispatchAttempt,
    EnvironmentGranted,
    GroupReleased,
    Input,
    Planned,
    RetryRequested,
    RunState,
    StageState,
)
from schemas.states import (
    RUN_TERMINAL,
    RUN_TRANSITIONS,
    STAGE_TRANSITIONS,
    RunStatus,
    StageStatus,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
T0 = datetime(2025, 12, 31, 23, 0, tzinfo=UTC)
_ACTIVE = (StageStatus.QUEUED, StageStatus.RUNNING)
# Bounded so the unit suite stays fast; derandomized so CI sees the same examples every time.
_BOUNDED = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def _reachable(table: dict[object, frozenset[object]], start: object) -> set[object]:
    """Every status reachable from `start` through the table (one decision may take several
    steps: a result that overtook its start goes queued -> running -> succeeded)."""
    seen, todo = {start}, [start]
    while todo:
        for nxt in table[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


_RUN_PATHS = {s: _reachable(RUN_TRANSITIONS, s) for s in RunStatus}  # type: ignore[arg-type]
_STAGE_PATHS = {s: _reachable(STAGE_TRANSITIONS, s) for s in StageStatus}  # type: ignore[arg-type]


@st.composite
def pipelines(draw: st.DrawFn) -> tuple[StageState, ...]:
    """A small DAG: stages needing earlier ones, some retried, some allowed to fail, some behind a
    manual approval (with or without a script)."""
    count = draw(st.integers(1, 5))
    stages = []
    for i in range(count):
        earlier = [f"s{j}" for j in range(i)]
        needs = tuple(sorted(draw(st.sets(st.sampled_from(earlier))))) if earlier else ()
        spec: dict[str, object] = {
            "script": draw(st.sampled_from(["true", "true", "true", ""])),
            "retry": {"count": draw(st.integers(0, 2))},
            "allow_failure": draw(st.booleans()),
            "approval": draw(st.sampled_from([False, False, False, True])),
        }
        if not spec["script"]:
            spec["approval"] = True  # a stage without a script is a gate
        if draw(st.integers(0, 3)) == 0:  # a deploying stage (decision 0027)
            spec["environment"] = "production"
            spec["deploy_rules"] = {
                "required_approvals": draw(st.integers(0, 2)),
                "wait_timer_s": draw(st.sampled_from([0.0, 60.0])),
                "branches": draw(st.sampled_from([[], ["main"], ["release/*"]])),
            }
        stages.append(StageState(f"s{i}", StageStatus.PENDING, needs, spec=spec, position=i))
    return tuple(stages)


@dataclasses.dataclass
class _World:
    """Workers and users around one run. `pending` are events already caused and not yet
    delivered; `live` are attempts dispatched whose end decide() has not yet seen."""

    outcomes: dict[tuple[str, int], str]
    pending: list[Input] = dataclasses.field(default_factory=list)
    delivered: list[Input] = dataclasses.field(default_factory=list)
    live: set[tuple[str, int]] = dataclasses.field(default_factory=set)
    dispatched: set[tuple[str, int]] = dataclasses.field(default_factory=set)

    def cause(self, before: RunState, decision: Decision) -> None:
        after = decision.state
        for command in decision.commands:
            if isinstance(command, DispatchAttempt):
                key = (command.stage, command.number)
                assert key not in self.dispatched, f"attempt {key} dispatched twice"
                others = {a for a in self.live if a[0] == command.stage}
                assert not others, f"{key} dispatched while {others} is still live"
                self.dispatched.add(key)
                self.live.add(key)
                began = T0 + timedelta(seconds=command.number)
                status = self.outcomes.get(key, "succeeded")
                self.pending += [
                    AttemptStartedInput(command.stage, command.number, "w", started_at=began),
                    AttemptFinishedInput(
                        command.stage,
                        command.number,
                        status,
                        exit_code=0 if status == "succeeded" else 1,
                        failure_kind=None if status == "succeeded" else "script_failure",
                        started_at=began,
                        finished_at=began + timedelta(seconds=1),
                    ),
                ]
            elif isinstance(command, CancelAttempts):
                # The shell fences the queued attempts it cancels: their worker's claim is refused,
                # so they end now (their events may still arrive, late, and must change nothing).
                for name in command.stages:
                    was, now = before.stages[name], after.stages[name]
                    if was.status is StageStatus.QUEUED and now.status is StageStatus.CANCELLED:
                        self.live.discard((name, was.attempt))
        for name, stage in after.stages.items():
            if stage.status is StageStatus.WAITING_APPROVAL and Approved(name) not in self.pending:
                self.pending.append(Approved(name))  # someone approves it, sooner or later
        for deployment in after.deployments.values():
            if deployment.status != "waiting":
                continue
            follow: Input
            if deployment.ready_at is None and deployment.wait_until is not None:
                follow = DeploymentTimerInput(deployment.id, deployment.wait_until)  # its timer fires
            elif (
                len([r for r in deployment.approvals if r.decision == "approved"])
                < deployment.required_approvals
            ):
                reviewer = f"user-{len(deployment.approvals)}"  # a new reviewer, sooner or later
                follow = DeploymentReviewedInput(deployment.id, reviewer, "approved", "", NOW)
            else:
                follow = EnvironmentGranted(deployment.id)  # its environment becomes free
            if follow not in self.pending:
                self.pending.append(follow)
        if (
            after.waiting_for_group
            and after.status not in RUN_TERMINAL
            and GroupReleased() not in self.pending
        ):
            self.pending.append(GroupReleased())  # the group's other run ends, sooner or later

    def ended(self, event: Input, before: RunState, after: RunState) -> None:
        if isinstance(event, AttemptFinishedInput):
            was = before.stages.get(event.stage)
            if was is not None and was.attempt == event.number and was.status in _ACTIVE:
                self.live.discard((event.stage, event.number))


def _check_step(before: RunState, event: Input, d: Decision) -> None:
    after = d.state
    # decide() turns a transition its handlers did not foresee into this note instead of raising.
    assert "refused: illegal" not in d.note, f"decide() fell back on refusing {event}: {d.note}"
    assert after.status in _RUN_PATHS[before.status], f"run {before.status} -> {after.status}"
    assert set(after.stages) == set(before.stages) or before.status is RunStatus.REQUESTED
    for name, stage in after.stages.items():
        was = before.stages.get(name)
        if was is None:
            continue
        assert stage.status in _STAGE_PATHS[was.status], f"{name}: {was.status} -> {stage.status}"
        assert stage.attempt >= was.attempt, f"{name}: attempt went back {was.attempt} -> {stage.attempt}"
    dispatched = [c.stage for c in d.commands if isinstance(c, DispatchAttempt)]
    assert len(dispatched) == len(set(dispatched)), f"one decision dispatched a stage twice: {d.commands}"
    if after.status in RUN_TERMINAL:
        assert all(s.status not in _ACTIVE for s in after.stages.values()), "a finished run has live stages"


def _run(waiting: bool) -> tuple[RunState, Planned]:
    state = RunState(id=uuid.UUID(int=1), project_id=uuid.UUID(int=2), status=RunStatus.REQUESTED, ref="main")
    return state, Planned(sha="b" * 40, stages=(), admission="wait" if waiting else "run")


@_BOUNDED
@given(
    stages=pipelines(),
    waiting=st.booleans(),
    failures=st.sets(st.tuples(st.sampled_from([f"s{i}" for i in range(5)]), st.integers(1, 4))),
    script=st.lists(
        st.tuples(
            st.integers(0, 10_000),  # which pending event goes next
            st.sampled_from(["next", "next", "next", "next", "duplicate", "stale", "cancel", "retry"]),
        ),
        min_size=1,
        max_size=120,
    ),
)
def test_no_delivery_order_gives_an_illegal_transition_two_live_attempts_or_a_run_that_never_ends(
    stages: tuple[StageState, ...],
    waiting: bool,
    failures: set[tuple[str, int]],
    script: list[tuple[int, str]],
) -> None:
    world = _World(outcomes=dict.fromkeys(failures, "failed"))
    state, planned = _run(waiting)
    planned = dataclasses.replace(planned, stages=stages)
    d = decide(state, planned, NOW)
    _check_step(state, planned, d)
    world.cause(state, d)
    state = d.state
    retries = 0
    moves = deque(script)
    steps = 0
    while world.pending or moves:
        steps += 1
        assert steps < 2_000, "the run does not settle"
        pick, kind = moves.popleft() if moves else (0, "next")
        event: Input
        if kind == "duplicate" and world.delivered:
            event = world.delivered[pick % len(world.delivered)]
        elif kind == "stale" and world.dispatched:
            name, number = sorted(world.dispatched)[pick % len(world.dispatched)]
            event = AttemptFinishedInput(name, number - 1 - pick % 2, "succeeded", exit_code=0)
        elif kind == "cancel":
            event = CancelRequested("raced")
        elif kind == "retry" and retries < 2:
            retries += 1
            event = RetryRequested()
        elif world.pending:
            event = world.pending.pop(pick % len(world.pending))
        else:
            continue
        d = decide(state, event, NOW)
        _check_step(state, event, d)
        if isinstance(event, AttemptStartedInput | AttemptFinishedInput) and event in world.delivered:
            assert not any(isinstance(c, DispatchAttempt) for c in d.commands), (
                f"a duplicate {event} caused work"
            )
        world.ended(event, state, d.state)
        world.cause(state, d)
        world.delivered.append(event)
        state = d.state
    assert not world.live, f"attempts {world.live} never ended"
    assert state.status in RUN_TERMINAL, f"every attempt ended but the run is {state.status}: {state.stages}"


@_BOUNDED
@given(stages=pipelines(), cut=st.integers(0, 60), seed=st.integers(0, 10_000))
def test_a_cancel_racing_the_results_always_ends_the_run_and_stops_every_attempt(
    stages: tuple[StageState, ...], cut: int, seed: int
) -> None:
    """Cancel at any point of a run, then let every attempt in flight report (in any order): the
    run ends, and it ends cancelled unless it had already ended before the cancel."""
    world = _World(outcomes={})
    state, planned = _run(False)
    d = decide(state, dataclasses.replace(planned, stages=stages), NOW)
    world.cause(state, d)
    state = d.state
    for step in range(cut):
        if not world.pending:
            break
        event = world.pending.pop((seed + step) % len(world.pending))
        d = decide(state, event, NOW)
        _check_step(state, event, d)
        world.ended(event, state, d.state)
        world.cause(state, d)
        state = d.state
    ended_before = state.status in RUN_TERMINAL
    d = decide(state, CancelRequested("raced"), NOW)
    _check_step(state, CancelRequested("raced"), d)
    world.cause(state, d)
    state = d.state
    world.pending = [
        e
        for e in world.pending
        if not isinstance(
            e, Approved | GroupReleased | DeploymentReviewedInput | DeploymentTimerInput | EnvironmentGranted
        )
    ]
    while world.pending:
        event = world.pending.pop(seed % len(world.pending))
        d = decide(state, event, NOW)
        _check_step(state, event, d)
        assert not any(isinstance(c, DispatchAttempt) for c in d.commands), "work dispatched after a cancel"
        world.ended(event, state, d.state)
        world.cause(state, d)
        state = d.state
    assert not world.live
    assert state.status in RUN_TERMINAL
    if not ended_before:
        assert state.status is RunStatus.CANCELLED
