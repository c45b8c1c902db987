"""Pure parts of the recovery scenario: gaps between stage starts, the first start after a fault,
the audit of a case's runs, and the group coordinator's lines in the broker's log."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from bench.scenarios._recovery import (
    Attempt,
    Gap,
    audit,
    broker_lines,
    describe_events,
    first_start,
    group_events,
    longest_gap,
    ms_after,
)
from bench.scenarios.recovery import RECOVERY_ONE, Mode
from schemas.pipeline import parse_definition


def attempt(
    started: float | None,
    *,
    worker: str | None = "w1",
    number: int = 1,
    status: str = "succeeded",
    stage: uuid.UUID | None = None,
    queued: float = 0.0,
    created: float = 0.0,
    swept: bool | None = False,
) -> Attempt:
    return Attempt(
        run_id=uuid.uuid4(),
        stage_id=stage or uuid.uuid4(),
        number=number,
        status=status,
        worker_id=worker,
        run_created=created,
        queued=queued,
        started=started,
        swept=swept,
    )


# -- gaps and first starts ------------------------------------------------------------------------


def test_the_longest_gap_is_the_longest_stretch_between_consecutive_starts() -> None:
    gap = longest_gap([10.1, 10.2, 12.7, 12.8], since=10.0, until=13.0)
    assert gap == Gap(10.2, 12.7)
    assert gap.ms == pytest.approx(2500.0)


def test_a_quiet_start_or_end_of_the_window_counts_as_a_gap() -> None:
    assert longest_gap([13.0, 13.1], since=10.0, until=13.2) == Gap(10.0, 13.0)
    assert longest_gap([10.1, 10.2], since=10.0, until=14.0) == Gap(10.2, 14.0)


def test_starts_outside_the_window_are_ignored_and_no_start_at_all_is_one_gap() -> None:
    assert longest_gap([1.0, 99.0], since=10.0, until=11.5) == Gap(10.0, 11.5)


def test_starts_need_not_be_sorted() -> None:
    assert longest_gap([12.0, 10.5, 11.0], since=10.0, until=12.5) == Gap(11.0, 12.0)


def test_a_window_that_ends_before_it_begins_is_refused() -> None:
    with pytest.raises(ValueError, match="before it begins"):
        longest_gap([], since=2.0, until=1.0)


def test_first_start_is_the_earliest_accepted_attempt_at_or_after_the_moment() -> None:
    early = attempt(9.0, worker="new")
    other = attempt(10.2, worker="old")
    mine = attempt(10.5, worker="new")
    later = attempt(11.0, worker="new")
    never = attempt(None, worker="new")
    found = first_start([later, never, other, early, mine], after=10.0, where=lambda a: a.worker_id == "new")
    assert found is mine
    assert first_start([later, other, mine], after=10.0) is other


def test_first_start_is_none_without_a_matching_started_attempt() -> None:
    assert first_start([attempt(None), attempt(5.0)], after=10.0) is None
    assert first_start([attempt(12.0, worker="a")], after=10.0, where=lambda a: a.worker_id == "b") is None


def test_ms_after_is_milliseconds_from_the_moment_to_the_start() -> None:
    assert ms_after(attempt(12.5), 10.0) == pytest.approx(2500.0)
    assert ms_after(None, 10.0) is None
    assert ms_after(attempt(None), 10.0) is None


# -- the audit --------------------------------------------------------------------------------------


def test_an_audit_of_runs_that_all_succeeded_at_their_first_attempt_is_ok() -> None:
    attempts = [attempt(1.0), attempt(2.0)]
    result = audit({a.run_id: "succeeded" for a in attempts}, attempts, killed_workers={"w9"})
    assert result.ok
    assert (result.runs, result.lost, result.retried, result.unexplained) == (2, 0, 0, 0)
    assert "all succeeded" in result.describe()


def test_a_second_attempt_after_one_lost_with_the_killed_worker_is_expected() -> None:
    stage = uuid.uuid4()
    lost = attempt(1.0, worker="killed", status="lost", stage=stage)
    retry = attempt(17.0, worker="w2", number=2, stage=stage)
    result = audit({lost.run_id: "succeeded"}, [lost, retry], killed_workers={"killed"})
    assert result.ok
    assert (result.lost, result.retried, result.unexplained, result.lost_elsewhere) == (1, 1, 0, 0)
    assert "1 attempt(s) lost with the killed worker, 1 retried" in result.describe()


def test_a_second_attempt_whose_first_was_not_lost_is_unexplained() -> None:
    stage = uuid.uuid4()
    first = attempt(1.0, status="failed", stage=stage)
    second = attempt(2.0, number=2, stage=stage)
    result = audit({first.run_id: "succeeded"}, [first, second], killed_workers={"w1"})
    assert not result.ok
    assert result.unexplained == 1
    assert "WITHOUT A LOST ONE BEFORE" in result.describe()


def test_an_attempt_lost_on_a_worker_nobody_killed_fails_the_audit() -> None:
    stage = uuid.uuid4()
    lost = attempt(1.0, worker="healthy", status="lost", stage=stage)
    retry = attempt(17.0, number=2, stage=stage)
    result = audit({lost.run_id: "succeeded"}, [lost, retry], killed_workers={"killed"})
    assert not result.ok
    assert (result.lost, result.lost_elsewhere) == (0, 1)
    assert "NOBODY KILLED" in result.describe()


def test_a_run_that_did_not_succeed_fails_the_audit_and_is_counted_by_status() -> None:
    run_a, run_b, run_c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    result = audit({run_a: "succeeded", run_b: "failed", run_c: "queued"}, [], killed_workers=())
    assert not result.ok
    assert result.not_succeeded == {"failed": 1, "queued": 1}
    assert "NOT ALL SUCCEEDED (1 failed, 1 queued)" in result.describe()


# -- the broker's log ---------------------------------------------------------------------------------

PREFIX = "[GroupCoordinator id=1 topic=__consumer_offsets partition=2] "
SUFFIX = " (org.apache.kafka.coordinator.group.GroupMetadataManager)"
STATIC_REJOIN = (
    "Static member with groupInstanceId=bench-worker-1 and unknown member id joins group "
    "ns1.workers.default in Stable state. Replacing previously mapped member bench-worker-1-5324 with "
    "this groupInstanceId."
)
REBALANCE_JOIN = (
    "Preparing to rebalance group ns1.workers.default in state PreparingRebalance with old generation 2 "
    "(reason: Adding new member comet-worker-default-34bf with group instance id null; client reason: "
    "not provided)."
)
EXPIRED = (
    "Member comet-worker-default-c961 in group ns1.workers.default has failed, removing it from the group."
)
REBALANCE_EXPIRY = (
    "Preparing to rebalance group ns1.orchestrator in state PreparingRebalance with old generation 1 "
    "(reason: removing member bench-orchestrator-1-c980 on heartbeat expiration.)."
)
STABLE = "Stabilized group ns1.workers.default generation 3 with 2 members."


def stamp(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]


def log_line(at: float, message: str) -> str:
    return f"[{stamp(at)}] INFO {PREFIX}{message}{SUFFIX}"


T0 = datetime(2026, 11, 29, 23, 24, 30).timestamp()


def test_broker_lines_keep_the_namespace_s_lines_within_the_window_without_the_context() -> None:
    text = "\n".join(
        [
            log_line(T0 - 5, STATIC_REJOIN),  # before the window
            log_line(T0 + 1.25, STATIC_REJOIN),
            log_line(T0 + 2, STATIC_REJOIN.replace("ns1.", "other.")),  # another namespace
            "a continuation line without a timestamp ns1.workers.default",
            log_line(T0 + 3, STABLE),
            log_line(T0 + 60, STABLE),  # after it
        ]
    )
    lines = broker_lines(text, "ns1", T0, T0 + 10)
    assert [round(at - T0, 3) for at, _ in lines] == [1.25, 3.0]
    assert lines[0][1].startswith("Static member with groupInstanceId=bench-worker-1")


def test_group_events_name_static_rejoins_rebalances_expiries_and_stable_groups() -> None:
    lines = [
        (T0 + i, f"{message}{SUFFIX}")
        for i, message in enumerate([STATIC_REJOIN, REBALANCE_JOIN, EXPIRED, REBALANCE_EXPIRY, STABLE])
    ]
    lines.append((T0 + 9, "Loaded member metadata for group ns1.workers.default"))  # not an event
    events = group_events(lines)
    assert [(e.group, e.what) for e in events] == [
        ("ns1.workers.default", "static member bench-worker-1 (re)joined in Stable state"),
        ("ns1.workers.default", "rebalance: a new member joined"),
        ("ns1.workers.default", "member comet-worker-default-c961 expired"),
        ("ns1.orchestrator", "rebalance: a member's session expired"),
        ("ns1.workers.default", "stable with 2 member(s)"),
    ]
    assert [e.rebalance for e in events] == [False, True, False, True, False]


def test_described_events_are_timed_from_the_fault_without_the_namespace_and_bounded() -> None:
    events = group_events([(T0 + 4.6, STATIC_REJOIN), (T0 + 10.4, STABLE)])
    assert describe_events(events, T0, "ns1.") == (
        "+4.6 s workers.default: static member bench-worker-1 (re)joined in Stable state; "
        "+10.4 s workers.default: stable with 2 member(s)"
    )
    assert describe_events(events, T0, "ns1.", limit=1).endswith("; … 1 more")
    assert describe_events([], T0, "ns1.") == "no joins, rebalances or expiries"


# -- the scenario's setup ----------------------------------------------------------------------------


def test_static_mode_gives_each_process_its_own_instance_id_and_dynamic_mode_none() -> None:
    assert Mode("static", True).ids("worker-1") == {"instance_id": "bench-worker-1"}
    assert Mode("dynamic", False).ids("worker-1") == {}


def test_the_recovery_pipeline_retries_a_stage_lost_with_its_worker_only() -> None:
    stage = parse_definition(RECOVERY_ONE).stages["only"]
    assert stage.retry.count >= 1
    assert list(stage.retry.when) == ["lost_worker"]
