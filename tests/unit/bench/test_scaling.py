"""The elasticity arithmetic: the stall after each membership change, the typical gap, percentiles."""

from __future__ import annotations

import pytest

from bench.scenarios._scaling import Change, percentile, stalls_after, typical_gap_ms


def test_the_stall_after_a_change_is_the_longest_stretch_without_a_start_in_its_window() -> None:
    starts = [0.0, 0.1, 0.2, 1.0, 3.5, 3.6, 10.0]
    changes = [Change(0.05, "worker 2 joined"), Change(3.55, "worker 2 left")]

    stalls = stalls_after(starts, changes, window_s=3.0, end=20.0)

    assert [(s.change.what, round(s.gap.ms)) for s in stalls] == [
        ("worker 2 joined", 2050),
        ("worker 2 left", 2950),
    ]
    assert stalls[0].describe() == "worker 2 joined: longest stretch without a stage start 2050 ms"


def test_a_window_is_cut_where_the_stream_ended_and_a_change_after_it_is_left_out() -> None:
    stalls = stalls_after([0.0, 1.0], [Change(0.5, "a"), Change(5.0, "b")], window_s=10.0, end=1.2)

    assert [(s.change.what, round(s.gap.ms)) for s in stalls] == [("a", 500)]


def test_the_typical_gap_is_the_median_gap_between_consecutive_starts() -> None:
    assert typical_gap_ms([0.3, 0.0, 0.1, 1.3]) == pytest.approx(200.0)
    assert typical_gap_ms([1.0]) == 0.0


def test_percentiles_take_the_nearest_rank() -> None:
    assert percentile([5.0, 1.0, 3.0], 0.5) == 3.0
    assert percentile([5.0, 1.0, 3.0], 1.0) == 5.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)
