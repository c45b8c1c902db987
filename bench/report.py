"""The printed benchmark report: sections of figures in aligned columns, each with its ratio.

A row reads `name  value unit   x 16.6 of raw Kafka RTT p50`; references have no ratio column.
"""

from __future__ import annotations

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
    digits = 2 if figure.ratio < 1 else 1
    return f"x {figure.ratio:.{digits}f} of {figure.reference}"


def render(sections: Sequence[Section]) -> str:
    """All sections as one aligned table (the same column widths throughout)."""
    figures = [f for s in sections for f in s.figures]
    name_w = max((len(f.name) for f in figures), default=0)
    value_w = max((len(format_value(f.value)) for f in figures), default=0)
    unit_w = max((len(f.unit) for f in figures), default=0)
    lines: list[str] = []
    for section in sections:
        if lines:
            lines.append("")
        lines.append(section.title)
        lines.extend(f"  ({note})" for note in section.notes)
        for f in section.figures:
            row = f"  {f.name:<{name_w}}  {format_value(f.value):>{value_w}} {f.unit:<{unit_w}}"
            ratio = format_ratio(f)
            lines.append(f"{row}   {ratio}".rstrip() if ratio else row.rstrip())
    return "\n".join(lines)
