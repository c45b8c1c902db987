"""Pure arithmetic of elasticity, on wall-clock timestamps (Unix seconds): the stall that follows
each change of membership (a process joining or leaving a consumer group makes the group
rebalance, and its members stop consuming meanwhile), measured as the longest stretch without a
stage start in a window after the change, beside the typical gap between starts; and the time
from a worker's process start to its first claimed stage. Shared by the elastic test
(tests/integration/test_elastic.py) and the `scaling` bench scenario."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bench.scenarios._recovery import Gap, longest_gap


@dataclass(frozen=True, slots=True)
class Change:
    """A process joined or left (`what`, e.g. "worker 3 joined") at `at`."""

    at: float
    what: str


@dataclass(frozen=True, slots=True)
class Stall:
    change: Change
    gap: Gap

    def describe(self) -> str:
        return f"{self.change.what}: longest stretch without a stage start {self.gap.ms:.0f} ms"


def stalls_after(
    starts: Iterable[float], changes: Sequence[Change], *, window_s: float, end: float
) -> list[Stall]:
    """For each change, the longest stretch without a stage start in [at, at + window_s] (cut at
    `end`, when the stream of work stopped: a quiet end is no stall)."""
    points = sorted(starts)
    return [
        Stall(c, longest_gap(points, c.at, max(min(c.at + window_s, end), c.at)))
        for c in changes
        if c.at < end
    ]


def typical_gap_ms(starts: Iterable[float]) -> float:
    """The median stretch between consecutive stage starts (0 with fewer than two)."""
    gaps = [(b - a) * 1000.0 for a, b in itertools.pairwise(sorted(starts))]
    return statistics.median(gaps) if gaps else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-quantile (0..1) by the nearest rank; ValueError when there are no values."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[rank]
