"""The verdict of `make chaos` over hand-made histories: each check finds what it is for, and
nothing in a clean history."""

from __future__ import annotations

import uuid

from chaos.checks import (
    AttemptSpan,
    HistoryEvent,
    doubly_committed,
    executions,
    heals,
    illegal_transitions,
    intake,
    lease_overlaps,
    script_overlaps,
    table,
)

RUN = uuid.uuid4()


def _run(*steps: tuple[str | None, str]) -> list[HistoryEvent]:
    return [HistoryEvent(RUN, "run", previous, status) for previous, status in steps]


def test_a_run_that_goes_requested_queued_running_succeeded_is_legal() -> None:
    history = _run(
        (None, "requested"), ("requested", "queued"), ("queued", "running"), ("running", "succeeded")
    )
    assert illegal_transitions(history) == []


def test_a_finished_run_that_starts_running_again_is_illegal() -> None:
    history = _run((None, "queued"), ("queued", "succeeded"), ("succeeded", "running"))
    assert illegal_transitions(history) == [f"run {RUN} run: succeeded -> running"]


def test_a_change_whose_previous_is_not_the_last_status_is_illegal() -> None:
    history = _run((None, "queued"), ("running", "succeeded"))
    assert illegal_transitions(history) == [f"run {RUN} run: says running -> succeeded, was queued"]


def test_attempt_steps_without_a_previous_are_judged_against_the_last_seen() -> None:
    attempt = f"attempt {uuid.uuid4()}"
    legal = [HistoryEvent(RUN, attempt, None, s) for s in ("queued", "running", "lost")]
    assert illegal_transitions(legal) == []
    resurrected = [*legal, HistoryEvent(RUN, attempt, None, "running")]
    assert illegal_transitions(resurrected) == [f"run {RUN} {attempt}: lost -> running"]


def test_an_unknown_status_is_illegal() -> None:
    stage = [
        HistoryEvent(RUN, "stage a", None, "pending"),
        HistoryEvent(RUN, "stage a", "pending", "exploded"),
    ]
    assert illegal_transitions(stage) == [f"run {RUN} stage a: pending -> exploded"]


def test_an_attempt_finished_twice_has_two_committed_results() -> None:
    once, twice = uuid.uuid4(), uuid.uuid4()
    assert doubly_committed([once, twice, twice]) == [twice]


def test_a_retry_that_starts_before_the_lost_attempt_ended_overlaps_its_lease() -> None:
    stage = uuid.uuid4()
    first, second = uuid.uuid4(), uuid.uuid4()
    clean = [AttemptSpan(stage, first, "w1", 10.0, 16.0), AttemptSpan(stage, second, "w2", 16.5, 17.0)]
    assert lease_overlaps(clean) == []
    early = [AttemptSpan(stage, first, "w1", 10.0, 16.0), AttemptSpan(stage, second, "w2", 12.0, 13.0)]
    assert len(lease_overlaps(early)) == 1
    never_ended = [AttemptSpan(stage, first, "w1", 10.0, None), AttemptSpan(stage, second, "w2", 99.0, 100.0)]
    assert len(lease_overlaps(never_ended)) == 1


def test_intake_counts_lost_duplicated_unfinished_and_finished() -> None:
    done, running, a, b = (uuid.uuid4() for _ in range(4))
    statuses = {done: "succeeded", running: "running", a: "failed", b: "succeeded"}
    result = intake({"k1": [done], "k2": [], "k3": [running], "k4": [a, b], "k5": [done, done]}, statuses)
    assert (result.acknowledged, result.finished) == (5, 2)
    assert (result.lost, result.duplicated, result.not_terminal) == (["k2"], ["k4"], ["k3"])


def test_heal_times_are_summarised_per_kind_with_the_unhealed_counted() -> None:
    found = heals([("kill", 2.0), ("kill", 4.0), ("kill", None), ("kafka restart", 9.0)])
    assert [(h.kind, h.p50, h.max, h.unhealed) for h in found] == [
        ("kill", 2.0, 4.0, 1),
        ("kafka restart", 9.0, 9.0, 0),
    ]
    text = table(intake({"k": []}, {}), illegal=0, doubles=0, overlaps=0, healed=found)
    assert "lost                                 1" in text
    assert "kafka restart" in text


def test_script_marks_pair_each_attempts_start_with_its_end() -> None:
    text = "r1 a 1 start 10,5\nr1 a 1 end 11.0\nr1 b 1 start 12.0\nnot a mark\nr1 c 1 end x\n"
    found = sorted(executions(text), key=lambda e: e.stage)
    assert [(e.stage, e.start, e.end) for e in found] == [("a", 10.5, 11.0), ("b", 12.0, None)]


def test_two_attempts_of_a_stage_whose_scripts_ran_together_overlap() -> None:
    apart = executions("r a 1 start 1.0\nr a 1 end 2.0\nr a 2 start 2.5\nr a 2 end 3.0\n")
    assert script_overlaps(apart) == []
    together = executions("r a 1 start 1.0\nr a 1 end 5.0\nr a 2 start 2.5\nr a 2 end 3.0\n")
    assert script_overlaps(together) == ["run r stage a: attempt 2's script started while 1's ran"]
    other_stage = executions("r a 1 start 1.0\nr a 1 end 5.0\nr b 1 start 2.5\nr b 1 end 3.0\n")
    assert script_overlaps(other_stage) == []
