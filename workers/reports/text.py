"""Text limits for what reports contain, and lenient numbers.

Anything a report says may be huge (a 1 MB test name, megabytes of captured output): every text
field is cut to its limit, with a marker saying how long it was, so a stored value never exceeds
the limit and a reader can tell it was cut. `parse_seconds` reads `time` attributes the way tools
really write them (missing, empty, `1,234.5` from Surefire, `0,25` from a decimal-comma locale,
`1E-07` from .NET).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_THOUSANDS = re.compile(r"[1-9]\d{0,2}(,\d{3})+")


@dataclass(frozen=True, slots=True)
class TextLimits:
    """Most characters kept per field of a test case (markers included)."""

    name: int = 2_000
    classname: int = 1_000
    file: int = 1_000
    message: int = 16_384
    output: int = 65_536


def truncate(text: str, limit: int) -> str:
    """`text` itself when it fits, else its start and a marker, `limit` characters at most."""
    if len(text) <= limit:
        return text
    marker = f" …[truncated: {len(text):,} characters in all]"
    return text[: max(limit - len(marker), 0)] + marker[: max(limit, 0)]


def parse_seconds(value: str | None) -> float:
    """Seconds from a `time` attribute; 0.0 for missing, empty, negative or unreadable values.

    Commas: with a `.` also present, or when every comma is followed by exactly three digits
    (`1,234`, Surefire's `#,##0.###` pattern), commas group thousands; a lone other comma is a
    decimal comma (`0,25`, `0,250`: no thousands group starts with 0).
    """
    if value is None:
        return 0.0
    text = value.strip()
    if "," in text:
        whole = text.split(".", 1)[0]
        if "." in text or _THOUSANDS.fullmatch(whole):
            text = text.replace(",", "")
        else:
            text = text.replace(",", ".", 1)
    try:
        seconds = float(text)
    except ValueError:
        return 0.0
    if not math.isfinite(seconds) or seconds < 0:
        return 0.0
    return seconds
