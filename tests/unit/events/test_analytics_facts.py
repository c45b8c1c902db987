"""`comet analytics`' pure core: a run's rows folded from its events in any cross-topic order, the
insight facts they imply, and the state kept in its faust table (tests/integration/test_analytics.py
runs it on the real services)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from db.projection import Event, from_envelope
from events.analytics.facts import RunMirror
from events.envelope import new_envelope
from schemas.events import AttemptFinished, AttemptStarted, RunChanged, RunRequested, TestCounts

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
RUN, PROJECT, STAGE, ATTEMPT, DEPLOYMENT = (uuid.uuid4() for _ in range(5))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _event(payload: Any, when: datetime = T0) -> Event:
    return from_envelope(new_envelope(payload, key=str(RUN), occurred_at=when))


def requested() -> Event:
    return _event(RunRequested(run_id=RUN, project_id=PROJECT, number=1, ref="refs/heads/main"))


def planned(revision: int | None = None) -> Event:
    return _event(
        RunChanged(
            run_id=RUN,
            revision=revision,
            at=at(1),
            run={"status": "queued", "queued_at": at(1)},
            new_stages=[
                {
                    "id": STAGE,
                    "run_id": RUN,
                    "name": "deploy",
                    "status": "queued",
                    "attempt": 1,
                    "queued_at": at(1),
                }
            ],
            new_attempts=[
                {
                    "id": ATTEMPT,
                    "run_id": RUN,
                    "stage_id": STAGE,
                    "number": 1,
                    "pool": "default",
                    "status": "queued",
                    "dispatch_at": None,
                    "queued_at": at(1),
                }
            ],
        )
    )


def attempt_started() -> Event:
    return _event(
        AttemptStarted(
            run_id=RUN,
            stage_id=STAGE,
            attempt_id=ATTEMPT,
            stage="deploy",
            number=1,
            worker_id="w1",
            fencing_token=3,
            started_at=at(3),
        )
    )


def attempt_finished() -> Event:
    return _event(
        AttemptFinished(
            run_id=RUN,
            stage_id=STAGE,
            attempt_id=ATTEMPT,
            stage="deploy",
            number=1,
            status="succeeded",
            exit_code=0,
            started_at=at(3),
            finished_at=at(8),
            tests=TestCounts(total=10, passed=10, flaky=2),
            fencing_token=3,
        )
    )


def stage_ran(*, deployment: str = "succeeded", revision: int | None = None) -> Event:
    return _event(
        RunChanged(
            run_id=RUN,
            revision=revision,
            at=at(9),
            run={"status": "succeeded" if deployment == "succeeded" else "failed", "finished_at": at(9)},
            stages={str(STAGE): {"status": "succeeded", "started_at": at(3), "finished_at": at(8)}},
            new_deployments=[
                {
                    "id": DEPLOYMENT,
                    "project_id": PROJECT,
                    "run_id": RUN,
                    "stage_id": STAGE,
                    "stage": "deploy",
                    "environment": "production",
                    "status": deployment,
                    "ref": "refs/heads/main",
                    "finished_at": at(8),
                }
            ],
        )
    )


def history() -> list[Event]:
    return [requested(), planned(), attempt_started(), attempt_finished(), stage_ran()]


def facts_of(events: list[Event]) -> dict[tuple[str, str], Any]:
    mirror = RunMirror()
    for event in events:
        mirror.apply(event)
    return {f.key: f for f in mirror.facts()}


def test_a_finished_run_implies_its_run_stage_deployment_and_test_facts() -> None:
    facts = facts_of(history())

    assert facts[("run", str(RUN))].status == "succeeded"
    stage = facts[("stage", str(STAGE))]
    assert (stage.stage, stage.value_s, stage.wait_s, stage.at) == ("deploy", 5.0, 2.0, at(8))
    deployment = facts[("deployment", str(DEPLOYMENT))]
    # Lead time: from the run's creation (run.requested's time) to the successful deployment.
    assert (deployment.environment, deployment.status, deployment.value_s) == ("production", "succeeded", 8.0)
    tests = facts[("tests", str(ATTEMPT))]
    assert (tests.tests_total, tests.tests_flaky, tests.stage) == (10, 2, "deploy")
    assert {f.project_id for f in facts.values()} == {str(PROJECT)}


def test_the_facts_are_the_same_whatever_order_the_three_topics_arrive_in() -> None:
    expected = facts_of(history())
    # Catching up on a backlog: the worker's results, then the run's changes, then its request.
    shuffled = [attempt_started(), attempt_finished(), planned(), stage_ran(), requested()]

    assert facts_of(shuffled) == expected


def test_a_failed_deployment_has_no_lead_time_and_a_running_run_no_run_fact() -> None:
    facts = facts_of([requested(), planned(), stage_ran(deployment="failed")])
    assert facts[("deployment", str(DEPLOYMENT))].value_s is None

    running = facts_of([requested(), planned()])
    assert running == {}


def test_a_run_whose_request_was_never_seen_implies_nothing_and_waits_boundedly() -> None:
    mirror = RunMirror()
    for _ in range(RunMirror.MAX_WAITING + 5):
        mirror.apply(attempt_started())

    assert mirror.facts() == []
    assert mirror.waiting == RunMirror.MAX_WAITING


def test_the_mirror_survives_its_faust_table_round_trip_with_events_still_waiting() -> None:
    mirror = RunMirror()
    for event in [planned(), attempt_started(), attempt_finished()]:
        mirror.apply(event)
    restored = RunMirror.load(mirror.dump())
    assert restored.waiting == 3
    for event in [stage_ran(), requested()]:
        restored.apply(event)

    assert {f.key: f for f in restored.facts()} == facts_of(history())


def test_a_redelivered_event_changes_no_fact() -> None:
    once = facts_of(history())
    twice = facts_of([*history(), attempt_finished(), stage_ran()])

    assert twice == once


def test_events_that_change_no_row_are_ignored() -> None:
    assert RunMirror().apply(Event("run.note", {"run_id": str(RUN)}, T0)) is False
    assert RunMirror.load(None).facts() == []


def stage_started(revision: int) -> Event:
    """The orchestrator's change after the attempt's start: the stage runs (set apart here)."""
    return _event(
        RunChanged(
            run_id=RUN,
            revision=revision,
            at=at(4),
            run={"status": "running", "started_at": at(3)},
            stages={str(STAGE): {"status": "running", "started_at": at(3)}},
        )
    )


def stage_finished(revision: int) -> Event:
    return _event(
        RunChanged(
            run_id=RUN,
            revision=revision,
            at=at(9),
            run={"status": "succeeded", "finished_at": at(9)},
            stages={str(STAGE): {"status": "succeeded", "finished_at": at(8)}},
        )
    )


def in_order() -> list[Event]:
    return [
        requested(),
        planned(1),
        stage_started(2),
        attempt_started(),
        attempt_finished(),
        stage_finished(3),
    ]


def test_a_runs_changes_are_folded_in_revision_order_whatever_order_its_topic_delivered_them() -> None:
    expected = facts_of(in_order())
    # Seen live: the stage's start overtook the plan that created the stage, and the plan was
    # published a second time after the stage had finished.
    delivered = [
        requested(),
        stage_started(2),
        planned(1),
        attempt_started(),
        attempt_finished(),
        stage_finished(3),
        planned(1),
    ]

    assert facts_of(delivered) == expected
    stage = expected[("stage", str(STAGE))]
    assert (stage.status, stage.value_s, stage.wait_s) == ("succeeded", 5.0, 2.0)
    assert expected[("run", str(RUN))].status == "succeeded"


def test_a_change_waits_for_the_one_before_it_and_a_repeated_one_changes_nothing() -> None:
    mirror = RunMirror()
    for event in [requested(), stage_finished(3), stage_started(2)]:
        mirror.apply(event)
    assert (mirror.waiting, mirror.facts()) == (2, [])

    assert mirror.apply(planned(1)) is True
    assert mirror.waiting == 0
    assert mirror.apply(stage_started(2)) is False
    assert [f.kind for f in mirror.facts()] == ["run", "stage"]


def test_revisions_survive_the_faust_table_round_trip() -> None:
    mirror = RunMirror()
    for event in [requested(), planned(1), stage_finished(3)]:
        mirror.apply(event)
    restored = RunMirror.load(mirror.dump())
    for event in [stage_started(2), attempt_started(), attempt_finished()]:
        restored.apply(event)

    assert restored.waiting == 0
    assert restored.apply(planned(1)) is False
    assert {f.key: f for f in restored.facts()} == facts_of(in_order())


def test_a_finished_run_whose_attempt_result_never_came_is_not_settled() -> None:
    """The result is on stage-results, the run's last change on run-status: faust lost the former
    once (decision 0030). The mirror says so, and analytics folds the run again from the outbox."""
    lost_result = RunMirror()
    for event in [requested(), planned(1), stage_started(2), attempt_started(), stage_finished(3)]:
        lost_result.apply(event)
    assert (lost_result.waiting, lost_result.settled) == (0, False)

    whole = RunMirror()
    for event in in_order():
        whole.apply(event)
    assert whole.settled
    running = RunMirror()
    for event in [requested(), planned(1), attempt_started()]:
        running.apply(event)
    assert running.settled  # a run still going may have active attempts
