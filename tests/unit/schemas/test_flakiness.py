"""The flaky-test rule: flip rates over a test's results, and when a test is listed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from schemas.flakiness import FLIP_RESULTS, Flakiness, flip_rate, flips, last_flip_at

P, F = False, True  # a result: True when the test failed
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _times(n: int) -> list[datetime]:
    return [T0 + timedelta(hours=i) for i in range(n)]


@pytest.mark.parametrize(
    ("results", "rate"),
    [
        ([], None),
        ([F], None),
        ([P, P], 0.0),
        ([P, F], 1.0),
        ([P, F, P, F], 1.0),
        ([P, F, P, P, F], 0.75),
        ([F, F, F, P], 1 / 3),
        ([P] * 10 + [F] * 10, 1 / 19),
    ],
)
def test_flip_rate_is_changes_over_results_minus_one(results: list[bool], rate: float | None) -> None:
    if rate is None:
        assert flip_rate(results) is None
    else:
        assert flip_rate(results) == pytest.approx(rate)


def test_only_the_last_fifty_results_count() -> None:
    # 50 steady results after an old flip: the flip has aged out.
    results = [F, P] + [P] * FLIP_RESULTS
    assert flips(results) == 1
    assert flip_rate(results) == 0.0
    assert flip_rate([F] + [P] * (FLIP_RESULTS - 1)) == pytest.approx(1 / (FLIP_RESULTS - 1))


def test_the_last_flip_is_when_the_result_after_it_happened() -> None:
    times = _times(5)
    assert last_flip_at([P, F, P, P, P], times) == times[2]
    assert last_flip_at([P, P, P], times[:3]) is None
    assert last_flip_at([P, P, P, P, F], times) == times[4]


def test_a_test_is_listed_for_a_flaky_case_or_a_flip_and_not_for_steady_results() -> None:
    steady_failure = Flakiness(0, None, [F, F, F], _times(3))
    assert not steady_failure.listed
    assert not Flakiness(0, None, [], []).listed
    flipping = Flakiness(0, None, [P, F, P], _times(3))
    assert flipping.listed
    assert (flipping.flips, flipping.runs_considered, flipping.flip_rate) == (2, 3, 1.0)
    assert flipping.last_flake_at == _times(3)[2]
    flagged = Flakiness(2, T0 - timedelta(days=3), [P], [T0])
    assert flagged.listed
    assert flagged.flip_rate is None
    assert flagged.last_flake_at == T0 - timedelta(days=3)


def test_the_last_flake_is_the_later_of_a_flaky_case_and_a_flip() -> None:
    times = _times(3)
    later_case = Flakiness(1, T0 + timedelta(days=1), [P, F, F], times)
    assert later_case.last_flake_at == T0 + timedelta(days=1)
    later_flip = Flakiness(1, T0 - timedelta(days=1), [P, F, F], times)
    assert later_flip.last_flake_at == times[1]
