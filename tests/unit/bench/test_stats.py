"""Percentiles (nearest rank), summaries, and figures compared with a reference."""

from __future__ import annotations

import pytest

from bench.stats import Aim, Figure, percentile, summarize

ONE_TO_HUNDRED = [float(v) for v in range(1, 101)]


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0, 1.0), (1, 1.0), (50, 50.0), (90, 90.0), (99, 99.0), (99.5, 100.0), (100, 100.0)],
)
def test_percentile_of_one_to_hundred_is_the_value_at_that_rank(q: float, expected: float) -> None:
    assert percentile(ONE_TO_HUNDRED, q) == expected


def test_percentile_does_not_depend_on_the_order_of_the_samples() -> None:
    assert percentile(list(reversed(ONE_TO_HUNDRED)), 90) == 90.0


def test_percentile_is_always_an_observed_sample_never_an_interpolation() -> None:
    samples = [10.0, 20.0, 30.0, 40.0]
    assert percentile(samples, 50) == 20.0
    assert percentile(samples, 51) == 30.0
    assert percentile(samples, 99) == 40.0


def test_percentile_of_a_single_sample_is_that_sample() -> None:
    assert percentile([7.5], 1) == 7.5
    assert percentile([7.5], 99) == 7.5


def test_p99_of_few_samples_is_the_maximum() -> None:
    assert percentile([1.0, 2.0, 3.0, 1000.0], 99) == 1000.0


def test_percentile_of_no_samples_is_an_error() -> None:
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)


@pytest.mark.parametrize("q", [-1, 100.1])
def test_percentile_outside_zero_to_hundred_is_an_error(q: float) -> None:
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], q)


def test_summary_gives_count_percentiles_max_and_mean() -> None:
    summary = summarize(ONE_TO_HUNDRED)
    assert summary.count == 100
    assert (summary.p50, summary.p90, summary.p99, summary.max) == (50.0, 90.0, 99.0, 100.0)
    assert summary.mean == pytest.approx(50.5)


def test_summary_mean_is_pulled_by_an_outlier_while_the_median_is_not() -> None:
    summary = summarize([1.0] * 9 + [91.0])
    assert summary.p50 == 1.0
    assert summary.mean == pytest.approx(10.0)
    assert summary.max == 91.0


def test_summary_of_no_samples_is_an_error() -> None:
    with pytest.raises(ValueError, match="no samples"):
        summarize([])


def test_a_figure_relative_to_a_reference_carries_its_name_and_the_ratio() -> None:
    reference = Figure("raw Kafka RTT p50", 2.0, "ms")
    figure = Figure("trigger→first stage p50", 6.4, "ms").relative_to(reference)
    assert figure.reference == "raw Kafka RTT p50"
    assert figure.ratio == pytest.approx(3.2)
    assert (figure.name, figure.value, figure.unit) == ("trigger→first stage p50", 6.4, "ms")


def test_a_figure_cannot_be_compared_with_a_reference_in_another_unit() -> None:
    with pytest.raises(ValueError, match="cannot compare"):
        Figure("stages", 100.0, "/s").relative_to(Figure("raw Kafka RTT p50", 2.0, "ms"))


def test_a_reference_of_zero_gives_no_ratio_instead_of_dividing_by_zero() -> None:
    figure = Figure("x", 1.0, "ms").relative_to(Figure("zero", 0.0, "ms"))
    assert figure.reference == "zero"
    assert figure.ratio is None


@pytest.mark.parametrize(
    ("aim", "value", "met"),
    [
        (Aim.at_most(10), 10.0, True),
        (Aim.at_most(10), 10.01, False),
        (Aim.at_least(1000), 1000.0, True),
        (Aim.at_least(1000), 999.9, False),
        (Aim.below(300), 299.9, True),
        (Aim.below(300), 300.0, False),
    ],
)
def test_an_aim_is_met_by_values_on_its_side_of_the_bound(aim: Aim, value: float, met: bool) -> None:
    assert aim.met_by(value) is met


def test_a_figure_keeps_its_reference_ratio_when_given_an_aim() -> None:
    figure = Figure("p50", 6.0, "ms").relative_to(Figure("ref", 2.0, "ms")).aiming(Aim.at_most(10))
    assert figure.aim == Aim.at_most(10)
    assert figure.ratio == pytest.approx(3.0)
