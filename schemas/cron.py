"""Cron schedules in an IANA time zone: validation, the next fire time, the latest tick.

Pure: every function takes the instant it reasons about; nothing reads a clock. A **tick** is a
UTC instant (store it as `timestamptz`); the zone only decides which instants are ticks. A
schedule fires a tick at most once: the orchestrator inserts a unique `(schedule, tick)` row in
the same transaction as the run request, so restarts, replays and several orchestrators agree.
After downtime only the latest missed tick fires: `due_tick(schedule, since=…, now=…)`.

Expressions (decision 0014): five fields, minute hour day-of-month month day-of-week, as
croniter reads them (names like MON or JAN, ranges, steps, lists, `L`, `W`, `#`; when both day
fields are restricted a day matching either fires, as in Vixie cron). Aliases: @yearly,
@annually, @monthly, @weekly, @daily, @midnight, @hourly. Refused: six or seven fields
(seconds, years), @reboot, `R` (random) and `H` (hashed) — two orchestrators must compute the
same ticks — and expressions that match no date at all (`0 0 30 2 *`).

Daylight saving time. The expression is matched on the zone's wall clock, then:
- **a wall time that does not exist** (spring forward) fires once, at the instant the clocks
  jump: a daily `30 2 * * *` in Europe/Berlin fires on 2026-03-29 at 03:00 CEST (01:00 UTC).
  Several such times (`*/15` in the skipped hour) are the same instant, hence one tick.
- **a wall time that happens twice** (fall back) fires once, at its first occurrence: `30 2 * * *`
  in Europe/Berlin fires on 2026-10-25 at 02:30 CEST (00:30 UTC) and not at 02:30 CET — unless
  the hour field matches every hour (`*`, `*/1`, `0-23`): then, as in ISC cron, each pass of the
  repeated hour fires, so `0 * * * *` still fires every real hour and `*/15` never pauses.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, available_timezones

from croniter import CroniterBadDateError, croniter

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Longer than any UTC offset change (the largest, Troll station's, is 2 h).
_MARGIN = timedelta(hours=3)
_MAX_STEPS = 10_000  # candidate wall times looked at per call; a valid schedule needs far fewer
_MACHINE_ZONES = frozenset({"localtime", "posixrules"})  # files of this machine, not zones
_FIELD_PARTS = re.compile(r"[,/#-]")
Field = Literal["cron", "timezone"]


class ScheduleError(ValueError):
    """A cron expression or time zone that cannot be used; `field` names which. Not retriable."""

    retriable = False

    def __init__(self, field: Field, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A validated schedule: `cron` normalised (an alias becomes its five fields), `timezone`
    an IANA name. Constructing one with a bad value raises ScheduleError."""

    cron: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        object.__setattr__(self, "cron", check_cron(self.cron))
        check_timezone(self.timezone)


def check_cron(expression: str) -> str:
    """The expression with aliases expanded and spacing normalised; ScheduleError otherwise."""
    text = " ".join(expression.split())
    text = ALIASES.get(text.lower(), text)
    if text.startswith("@"):
        raise ScheduleError("cron", f"{expression!r}: unknown alias (known: {', '.join(ALIASES)})")
    fields = text.split(" ")
    if len(fields) != 5:
        raise ScheduleError(
            "cron", f"{expression!r} is not a 5-field cron expression (minute hour day month weekday)"
        )
    for field in fields:
        for part in _FIELD_PARTS.split(field.upper()):
            if part == "R" or part.startswith("H"):
                raise ScheduleError(
                    "cron", f"{expression!r}: random (R) and hashed (H) fields are not supported"
                )
    if not croniter.is_valid(text):
        raise ScheduleError("cron", f"{expression!r} is not a valid cron expression")
    try:
        croniter(text, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        raise ScheduleError("cron", f"{expression!r} matches no date, so it would never fire") from None
    return text


def check_timezone(name: str) -> ZoneInfo:
    """The zone of an IANA name (e.g. Europe/Berlin, UTC); ScheduleError with a suggestion."""
    if name in _zone_names() and name not in _MACHINE_ZONES:
        return ZoneInfo(name)
    folded = {zone.lower(): zone for zone in _zone_names() - _MACHINE_ZONES}
    close = folded.get(name.strip().lower()) or next(
        iter(difflib.get_close_matches(name, sorted(folded.values()), n=1)), None
    )
    hint = f" (did you mean {close!r}?)" if close else ""
    raise ScheduleError("timezone", f"{name!r} is not an IANA time zone{hint}")


def next_fire(schedule: CronSchedule, after: datetime) -> datetime:
    """The first tick strictly after `after` (an aware datetime), in UTC."""
    zone, both_passes = _zone(schedule.timezone), _every_hour(schedule.cron)
    # Wall times before after's own can fire after it only as the second pass of a repeated
    # hour just ahead: start early enough for those, and no earlier.
    start = min(_wall(_aware(after, "after"), zone), _wall(after + _MARGIN, zone) - _MARGIN)
    cron = croniter(schedule.cron, start)
    best: datetime | None = None
    for _ in range(_MAX_STEPS):
        ticks = _ticks(cron.get_next(datetime), zone, both_passes)
        if best is not None and ticks[0] >= best:
            return best  # wall times from here on only map to later instants
        best = min([tick for tick in ticks if tick > after] + ([best] if best else []), default=None)
    raise ScheduleError("cron", f"{schedule.cron!r}: no tick found after {after.isoformat()}")


def latest_tick(schedule: CronSchedule, at: datetime) -> datetime | None:
    """The last tick at or before `at` (an aware datetime), in UTC; None when there is none."""
    zone, both_passes = _zone(schedule.timezone), _every_hour(schedule.cron)
    # Wall times after at's own can have fired before it as the first pass of a repeated hour
    # just behind (and at's own wall time may be a tick): start late enough for those.
    start = max(_wall(_aware(at, "at"), zone), _wall(at - _MARGIN, zone) + _MARGIN) + timedelta(minutes=1)
    cron = croniter(schedule.cron, start)
    best: datetime | None = None
    for _ in range(_MAX_STEPS):
        try:
            ticks = _ticks(cron.get_prev(datetime), zone, both_passes)
        except CroniterBadDateError:
            return best
        if best is not None and ticks[-1] <= best:
            return best  # wall times from here on only map to earlier instants
        best = max([tick for tick in ticks if tick <= at] + ([best] if best else []), default=None)
    return best


def due_tick(schedule: CronSchedule, *, since: datetime, now: datetime) -> datetime | None:
    """The tick to fire now: the latest tick in (since, now], or None. `since` is the last tick
    fired (or when the schedule was created), so missed ticks collapse into the latest one."""
    tick = latest_tick(schedule, now)
    return tick if tick is not None and tick > _aware(since, "since") else None


def _ticks(wall: datetime, zone: ZoneInfo, both_passes: bool) -> tuple[datetime, ...]:
    """The instants (ascending) at which this wall-clock time fires, by the DST rules above."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first == second:
        return (first,)
    if _wall(first, zone) != wall:  # in a gap: fold=0 lands after the jump, fold=1 before it
        return (_transition(min(first, second), max(first, second), zone),)
    earlier, later = sorted((first, second))
    return (earlier, later) if both_passes else (earlier,)


def _transition(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The instant in (before, after] where the zone's offset becomes the one `after` has."""
    target = after.astimezone(zone).utcoffset()
    low, high = int(before.timestamp()), int(after.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == target:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None, fold=0)


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime (with a time zone)")
    return value


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return check_timezone(name)


@lru_cache(maxsize=1024)
def _every_hour(expression: str) -> bool:
    hours = croniter(expression).expanded[1]
    return hours == ["*"] or len(set(hours)) == 24
