"""Moments as operators give them to `comet replay … --since T --until T` (CONTRACT §3): ISO 8601
(`2026-11-30T02:00:00Z`, `2026-11-30`; without a zone it means UTC) or relative to now (`2h`,
`3d`, `1h30m`: that long ago)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.durations import parse_duration


def parse_moment(text: str, now: datetime) -> datetime:
    """The moment `text` names; raises ValueError with the accepted forms."""
    value = text.strip()
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        pass
    else:
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    try:
        ago = parse_duration(value)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a moment (use ISO 8601 like 2026-11-30T14:00:00Z, or how long ago: 2h, 3d)"
        ) from None
    try:
        return now - timedelta(seconds=ago)
    except OverflowError:
        raise ValueError(f"{text!r} is out of the range of dates") from None
