"""The pure parts of the test-results API: status filters, windows, stored summaries, percent."""

from __future__ import annotations

from datetime import timedelta

import pytest

from api.errors import ValidationFailed
from api.routes.coverage import pull_request_target
from api.routes.flaky_tests import parse_window
from api.routes.tests import parse_statuses
from db.models import Run
from schemas.api.tests import ResultSummary, percent, percent_of


def test_statuses_can_be_repeated_or_comma_separated() -> None:
    assert parse_statuses(None) == []
    assert parse_statuses(["failed"]) == ["failed"]
    assert parse_statuses(["failed,errored", "failed", " skipped ", ""]) == ["errored", "failed", "skipped"]


@pytest.mark.parametrize("value", ["broken", "Failed", "failed,nope", "passed;skipped"])
def test_an_unknown_status_is_a_422_naming_the_query_field(value: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_statuses([value])
    assert caught.value.errors[0][0] == "query.status"


@pytest.mark.parametrize(
    ("value", "days"), [("30d", 30), ("7d", 7), ("1h", 1 / 24), ("366d", 366), ("2d12h", 2.5)]
)
def test_windows_read_like_durations(value: str, days: float) -> None:
    assert parse_window(value) == timedelta(days=days)


@pytest.mark.parametrize("value", ["", "abc", "59m", "367d", "nan", "inf", "-1d", "0"])
def test_bad_windows_are_a_422(value: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_window(value)
    assert caught.value.errors[0][0] == "query.window"


def test_a_stored_summary_reads_missing_or_broken_counts_as_zero() -> None:
    stored = {"total": 3, "passed": 2, "failed": "1", "flaky": True, "skipped": -1, "duration_s": 1.23456}
    summary = ResultSummary.from_stored(stored)
    assert summary.model_dump() == {
        "total": 3,
        "passed": 2,
        "failed": 0,
        "errored": 0,
        "skipped": 0,
        "flaky": 0,
        "quarantined": 0,
        "duration_s": 1.235,
    }
    assert ResultSummary.from_stored({"duration_s": float("nan")}).duration_s == 0.0


def test_summaries_add_up_and_none_stored_is_none() -> None:
    a = {"total": 2, "passed": 1, "failed": 1, "duration_s": 0.1}
    b = {"total": 3, "passed": 3, "flaky": 1, "duration_s": 0.2}
    total = ResultSummary.of_stored([a, None, b])
    assert total is not None
    assert (total.total, total.passed, total.failed, total.flaky, total.duration_s) == (5, 4, 1, 1, 0.3)
    assert ResultSummary.of_stored([None, None]) is None


def test_rates_are_percent_with_two_decimals() -> None:
    assert percent(2, 3) == 66.67
    assert percent(0, 0) is None
    assert percent_of(0.8125) == 81.25
    assert percent_of(1) == 100.0
    for bad in (None, 1.5, -0.1, True, "0.5"):
        assert percent_of(bad) is None


@pytest.mark.parametrize(
    ("trigger", "target"),
    [
        ({"kind": "webhook", "event": "pull_request", "base_branch": "main"}, "refs/heads/main"),
        (
            {"kind": "webhook", "event": "pull_request", "base_branch": "release/1.x"},
            "refs/heads/release/1.x",
        ),
        ({"kind": "webhook", "event": "push", "branch": "main"}, None),
        ({"kind": "api", "event": "manual"}, None),
        ({"kind": "webhook", "event": "pull_request", "base_branch": None}, None),
        ({"kind": "webhook", "event": "pull_request", "base_branch": "bad..branch"}, None),
    ],
)
def test_a_pull_requests_target_is_its_base_branch(trigger: dict[str, object], target: str | None) -> None:
    assert pull_request_target(Run(trigger=trigger)) == target
