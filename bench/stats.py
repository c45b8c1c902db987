"""Summaries of measured samples, and `Figure`: one printed number with its reference ratio.

Percentiles use the nearest-rank method (the smallest sample at or above the requested share
of the sorted samples), so every reported percentile is a value that was really observed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal


def percentile(samples: Sequence[float], q: float) -> float:
    """The nearest-rank `q`-th percentile (0 < q <= 100) of `samples`; q=0 gives the minimum."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Summary:
    """Distribution of one series of samples (all in the same unit)."""

    count: int
    p50: float
    p90: float
    p99: float
    max: float
    mean: float


def summarize(samples: Sequence[float]) -> Summary:
    if not samples:
        raise ValueError("summary of no samples")
    return Summary(
        count=len(samples),
        p50=percentile(samples, 50),
        p90=percentile(samples, 90),
        p99=percentile(samples, 99),
        max=max(samples),
        mean=sum(samples) / len(samples),
    )


@dataclass(frozen=True, slots=True)
class Aim:
    """A target a figure is printed beside (`aim ≤ 10 ms`), and whether the figure meets it."""

    bound: Literal["<=", ">=", "<"]
    value: float

    @classmethod
    def at_most(cls, value: float) -> Aim:
        return cls("<=", value)

    @classmethod
    def at_least(cls, value: float) -> Aim:
        return cls(">=", value)

    @classmethod
    def below(cls, value: float) -> Aim:
        return cls("<", value)

    def met_by(self, value: float) -> bool:
        if self.bound == "<=":
            return value <= self.value
        if self.bound == ">=":
            return value >= self.value
        return value < self.value

    @property
    def symbol(self) -> str:
        return {"<=": "≤", ">=": "≥", "<": "<"}[self.bound]


@dataclass(frozen=True, slots=True)
class Figure:
    """One printed number: `value unit`, how it compares with a reference of the same unit, and
    optionally the aim it is held against."""

    name: str
    value: float
    unit: str
    reference: str | None = None
    ratio: float | None = None
    aim: Aim | None = None

    def relative_to(self, reference: Figure) -> Figure:
        """This figure with its ratio to `reference` (which must be in the same unit)."""
        if reference.unit != self.unit:
            raise ValueError(
                f"cannot compare {self.unit} ({self.name}) with {reference.unit} ({reference.name})"
            )
        ratio = self.value / reference.value if reference.value else None
        return replace(self, reference=reference.name, ratio=ratio)

    def aiming(self, aim: Aim) -> Figure:
        """This figure with the aim it is printed beside."""
        return replace(self, aim=aim)
