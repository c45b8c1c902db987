"""The projection's fold (pure): which row changes a batch of events implies, merged, guarded and
idempotent. Writing them is tested on Postgres (tests/integration/test_rebuild.py and every test
of the orchestrator and workers, whose rows are written through it)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from db.projection import Event, fold, from_envelope, from_json
from events.envelope import new_envelope
from schemas.events import (
    AttemptDispatched,
    AttemptFinished,
    AttemptStarted,
    RunChanged,
    RunRequested,
    RunStatusChanged,
    TestCounts,
)

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
RUN, PROJECT, STAGE, ATTEMPT = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


def _event(payload: Any, at: datetime = T0) -> Event:
    return from_envelope(new_envelope(payload, key=str(RUN), occurred_at=at))


def requested() -> Event:
    return _event(RunRequested(run_id=RUN, project_id=PROJECT, number=7, ref="refs/heads/main"))


def planned(*, attempt_status: str = "queued") -> Event:
    return _event(
        RunChanged(
            run_id=RUN,
            at=T0,
            run={"status": "queued", "queued_at": T0, "sha": "abc"},
            new_stages=[
                {
                    "id": STAGE,
                    "run_id": RUN,
                    "name": "unit",
                    "status": "queued",
                    "attempt": 1,
                    "queued_at": T0,
                }
            ],
            new_attempts=[
                {
                    "id": ATTEMPT,
                    "run_id": RUN,
                    "stage_id": STAGE,
                    "number": 1,
                    "pool": "default",
                    "status": attempt_status,
                    "dispatch_at": None,
                    "queued_at": T0,
                }
            ],
        )
    )


def started(token: int = 5) -> Event:
    return _event(
        AttemptStarted(
            run_id=RUN,
            stage_id=STAGE,
            attempt_id=ATTEMPT,
            stage="unit",
            number=1,
            worker_id="w1",
            fencing_token=token,
            started_at=T0 + timedelta(seconds=1),
        )
    )


def finished(token: int | None = 5, status: str = "succeeded") -> Event:
    return _event(
        AttemptFinished(
            run_id=RUN,
            stage_id=STAGE,
            attempt_id=ATTEMPT,
            stage="unit",
            number=1,
            status=status,
            exit_code=0,
            worker_id="w1",
            started_at=T0 + timedelta(seconds=1),
            finished_at=T0 + timedelta(seconds=3),
            tests=TestCounts(total=2, passed=2, duration_s=0.5),
            fencing_token=token,
            report_problems=[{"file": "x.xml", "reason": "not XML"}],
        )
    )


def test_a_run_created_and_changed_in_one_batch_is_one_insert_with_its_latest_values() -> None:
    changes = fold([requested(), planned()])

    assert list(changes.run_inserts) == [str(RUN)]
    row = changes.run_inserts[str(RUN)]
    assert (row["status"], row["sha"], row["queued_at"], row["created_at"]) == ("queued", "abc", T0, T0)
    assert changes.run_updates == {}
    assert changes.stage_inserts[str(STAGE)]["queued_at"] == T0  # JSON turned back into a datetime


def test_an_attempt_started_and_finished_in_the_batch_of_its_insert_is_written_once_finished() -> None:
    changes = fold([planned(), started(), finished()])

    row = changes.attempt_inserts[str(ATTEMPT)]
    assert row["status"] == "succeeded"
    assert row["fencing_token"] == 5
    assert row["test_summary"]["total"] == 2
    assert row["report_errors"] == [{"file": "x.xml", "reason": "not XML"}]
    assert changes.started == {}
    assert changes.finished == {}


def test_a_result_under_another_fencing_token_does_not_count() -> None:
    changes = fold([planned(), started(token=5), finished(token=4, status="failed")])

    assert changes.attempt_inserts[str(ATTEMPT)]["status"] == "running"


def test_a_start_after_its_result_changes_nothing_as_decide_ignores_it() -> None:
    changes = fold([planned(), finished(token=None), started()])

    row = changes.attempt_inserts[str(ATTEMPT)]
    assert row["status"] == "succeeded"
    assert row["worker_id"] == "w1"
    assert "fencing_token" not in row


def test_applying_a_batch_twice_yields_the_same_rows() -> None:
    events = [requested(), planned(), started(), finished()]

    once, twice = fold(events), fold(events + events)

    assert twice.run_inserts == once.run_inserts
    assert twice.stage_inserts == once.stage_inserts
    assert twice.attempt_inserts == once.attempt_inserts


def test_changes_to_rows_written_before_the_batch_become_guarded_updates() -> None:
    changes = fold([started(), finished()])

    assert changes.started[str(ATTEMPT)]["status"] == "running"
    assert changes.finished[str(ATTEMPT)]["status"] == "succeeded"
    assert changes.attempt_inserts == {}


def test_a_retry_whose_backoff_ended_has_its_dispatch_time_cleared() -> None:
    dispatched = _event(
        AttemptDispatched(
            run_id=RUN, stage_id=STAGE, attempt_id=ATTEMPT, stage="unit", number=2, pool="default"
        )
    )

    assert fold([dispatched]).undelayed == {str(ATTEMPT)}


def test_events_that_change_no_row_are_counted_as_skipped() -> None:
    status = _event(RunStatusChanged(run_id=RUN, project_id=PROJECT, status="queued", at=T0))

    changes = fold([status, requested()])

    assert (changes.applied, changes.skipped) == (1, 1)


def test_a_stored_envelope_of_an_older_schema_is_upcast_before_it_is_applied() -> None:
    seen: list[tuple[str, int, int]] = []

    def upcast(kind: str, version: int, target: int, payload: dict[str, Any]) -> dict[str, Any]:
        seen.append((kind, version, target))
        return payload

    stored = new_envelope(RunRequested(run_id=RUN, project_id=PROJECT, number=1, ref="r"), key="k")
    data = stored.model_dump(mode="json")

    from_json(data, upcast)
    assert seen == []  # today's version: nothing to do
    RunRequested.VERSION = 2
    try:
        from_json(data, upcast)
    finally:
        RunRequested.VERSION = 1
    assert seen == [("run.requested", 1, 2)]
