"""The insights' read-side arithmetic: percentiles as Postgres' percentile_cont computes them, time
to restore per environment, and the rates (the SQL itself runs in tests/integration/test_analytics.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from db.repositories.insights import Insights, percentile, restore_times

T0 = datetime(2026, 11, 30, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([4.0], 0.95, 4.0),
        ([1.0, 2.0, 3.0, 4.0], 0.5, 2.5),
        ([4.0, 1.0, 3.0, 2.0], 0.95, 3.85),
        ([10.0, 20.0], 0.0, 10.0),
    ],
)
def test_a_percentile_interpolates_between_the_closest_ranks_like_percentile_cont(
    values: list[float], q: float, expected: float
) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_a_percentile_of_nothing_is_none() -> None:
    assert percentile([], 0.5) is None


def test_time_to_restore_runs_from_the_first_failure_to_the_next_success_per_environment() -> None:
    deployments = [
        ("production", at(0), "succeeded"),
        ("production", at(10), "failed"),
        ("staging", at(11), "failed"),
        ("production", at(15), "failed"),  # still failing: the incident began at 10
        ("production", at(40), "succeeded"),
        ("staging", at(12), "succeeded"),
        ("production", at(50), "failed"),  # not restored yet: no figure
    ]

    assert restore_times(deployments) == [30 * 60.0, 60.0]


def test_rates_are_none_without_anything_to_compute_them_from() -> None:
    empty = Insights(7 * 86400.0, 0, 0, None, None, 0, 0, 0, [], 0, 0)
    assert (empty.change_failure_rate, empty.success_rate, empty.flaky_rate) == (None, None, None)
    assert empty.deployment_frequency_per_day == 0.0

    some = Insights(2 * 86400.0, 6, 2, 30.0, 60.0, 10, 7, 1, [], 40, 4)
    assert some.deployment_frequency_per_day == 3.0
    assert some.change_failure_rate == 0.25
    assert some.success_rate == 7 / 8
    assert some.flaky_rate == 0.1
