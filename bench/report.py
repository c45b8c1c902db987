"""The printed benchmark report: sections of figures in aligned columns, each with its ratio.

A row reads `name  value unit   x 16.6 of raw Kafka RTT p50   aim ≤ 10 ms: missed`; references
have no ratio, and figures without an aim no aim column.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.stats import Figure


@dataclass(frozen=True, slots=True)
class Section:
    title: str
    figures: Sequence[Figure]
    notes: Sequence[str] = field(default_factory=tuple)


def format_value(value: float) -> str:
    """Three significant digits or so, never scientific notation."""
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_ratio(figure: Figure) -> str:
    if figure.reference is None:
        return ""
    if figure.ratio is None:
        return f"(no ratio: {figure.reference} was 0)"
    # Below 1, two significant digits (x 0.74, x 0.0075); from 1 up, one decimal (x 16.6).
    ratio = figure.ratio
    if ratio >= 1:
        text = f"{ratio:,.1f}"
    elif ratio > 0:
        text = f"{ratio:.{max(2, 1 - math.floor(math.log10(ratio)))}f}"
    else:
        text = f"{ratio:.2f}"
    return f"x {text} of {figure.reference}"


def format_aim(figure: Figure) -> str:
    """`aim ≤ 10 ms: met` (or `MISSED`); empty without an aim."""
    aim = figure.aim
    if aim is None:
        return ""
    verdict = "met" if aim.met_by(figure.value) else "MISSED"
    unit = f" {figure.unit}" if figure.unit else ""
    return f"aim {aim.symbol} {format_value(aim.value)}{unit}: {verdict}"


def render(sections: Sequence[Section]) -> str:
    """All sections as one aligned table (the same column widths throughout)."""
    figures = [f for s in sections for f in s.figures]
    name_w = max((len(f.name) for f in figures), default=0)
    value_w = max((len(format_value(f.value)) for f in figures), default=0)
    unit_w = max((len(f.unit) for f in figures), default=0)
    ratio_w = max((len(format_ratio(f)) for f in figures if f.aim is not None), default=0)
    lines: list[str] = []
    for section in sections:
        if lines:
            lines.append("")
        lines.append(section.title)
        lines.extend(f"  ({note})" for note in section.notes)
        for f in section.figures:
            row = f"  {f.name:<{name_w}}  {format_value(f.value):>{value_w}} {f.unit:<{unit_w}}"
            ratio, aim = format_ratio(f), format_aim(f)
            if aim:
                row = f"{row}   {ratio:<{ratio_w}}   {aim}"
            elif ratio:
                row = f"{row}   {ratio}"
            lines.append(row.rstrip())
    return "\n".join(lines)
