"""Cron schedules: validation, next fire times, the latest tick, and daylight-saving changes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from schemas.cron import CronSchedule, ScheduleError, check_cron, due_tick, latest_tick, next_fire


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def fires(schedule: CronSchedule, after: datetime, count: int) -> list[datetime]:
    ticks = []
    for _ in range(count):
        after = next_fire(schedule, after)
        ticks.append(after)
    return ticks


# --- daylight-saving changes -------------------------------------------------------------------

DST_CASES = [
    # Spring forward, Berlin 2026-03-29 02:00 CET -> 03:00 CEST: 02:30 does not exist that day and
    # fires once, at the jump (03:00 CEST = 01:00 UTC).
    (
        "30 2 * * *",
        "Europe/Berlin",
        "2026-03-27 12:00",
        ["2026-03-28 01:30", "2026-03-29 01:00", "2026-03-30 00:30"],
    ),
    # Fall back, Berlin 2026-10-25 03:00 CEST -> 02:00 CET: 02:30 happens twice and fires once.
    (
        "30 2 * * *",
        "Europe/Berlin",
        "2026-10-23 12:00",
        ["2026-10-24 00:30", "2026-10-25 00:30", "2026-10-26 01:30"],
    ),
    # Hourly schedules fire every real hour through both changes.
    (
        "0 * * * *",
        "Europe/Berlin",
        "2026-10-24 22:30",
        ["2026-10-24 23:00", "2026-10-25 00:00", "2026-10-25 01:00", "2026-10-25 02:00"],
    ),
    (
        "0 * * * *",
        "Europe/Berlin",
        "2026-03-28 22:30",
        ["2026-03-28 23:00", "2026-03-29 00:00", "2026-03-29 01:00", "2026-03-29 02:00"],
    ),
    # Every 15 minutes: the skipped hour collapses into one tick at the jump.
    (
        "*/15 * * * *",
        "Europe/Berlin",
        "2026-03-29 00:40",
        ["2026-03-29 00:45", "2026-03-29 01:00", "2026-03-29 01:15"],
    ),
    # New York: 2026-03-08 02:00 EST -> 03:00 EDT, 2026-11-01 02:00 EDT -> 01:00 EST.
    (
        "30 2 * * *",
        "America/New_York",
        "2026-03-06 12:00",
        ["2026-03-07 07:30", "2026-03-08 07:00", "2026-03-09 06:30"],
    ),
    (
        "30 1 * * *",
        "America/New_York",
        "2026-10-30 12:00",
        ["2026-10-31 05:30", "2026-11-01 05:30", "2026-11-02 06:30"],
    ),
    (
        "*/30 1 * * *",
        "America/New_York",
        "2026-11-01 05:00",
        ["2026-11-01 05:30", "2026-11-02 06:00", "2026-11-02 06:30"],
    ),
    # A time zone without DST and UTC itself are plain.
    ("0 9 * * 1-5", "Asia/Tokyo", "2026-03-27 00:00", ["2026-03-30 00:00", "2026-03-31 00:00"]),
    ("@daily", "UTC", "2026-10-24 23:59", ["2026-10-25 00:00", "2026-10-26 00:00"]),
]


@pytest.mark.parametrize(("cron", "zone", "after", "expected"), DST_CASES)
def test_fire_times_follow_the_wall_clock_across_dst_changes(
    cron: str, zone: str, after: str, expected: list[str]
) -> None:
    assert fires(CronSchedule(cron, zone), utc(after), len(expected)) == [utc(tick) for tick in expected]


def test_the_spring_forward_day_fires_a_daily_0230_schedule_exactly_once_at_0300_cest() -> None:
    schedule = CronSchedule("30 2 * * *", "Europe/Berlin")
    day = [t for t in fires(schedule, utc("2026-03-28 12:00"), 3) if t.date() == datetime(2026, 3, 29).date()]
    assert day == [utc("2026-03-29 01:00")]
    assert day[0].astimezone(ZoneInfo("Europe/Berlin")).strftime("%H:%M %Z") == "03:00 CEST"


def test_the_fall_back_day_does_not_fire_a_daily_schedule_twice() -> None:
    schedule = CronSchedule("30 2 * * *", "Europe/Berlin")
    second_0230 = utc("2026-10-25 01:30")  # 02:30 CET, the repeat
    assert next_fire(schedule, utc("2026-10-25 00:30")) == utc("2026-10-26 01:30")
    assert latest_tick(schedule, second_0230) == utc("2026-10-25 00:30")
    assert due_tick(schedule, since=utc("2026-10-25 00:30"), now=second_0230) is None


# --- the latest tick and what is due -------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "zone", "at", "expected"),
    [
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2026-03-29 01:00",
            "2026-03-29 01:00",
        ),  # a tick is at-or-before itself
        ("30 2 * * *", "Europe/Berlin", "2026-03-29 00:59", "2026-03-28 01:30"),
        ("0 * * * *", "Europe/Berlin", "2026-10-25 01:30", "2026-10-25 01:00"),  # 02:00 CET, the second pass
        ("30 2 * * *", "Europe/Berlin", "2026-10-25 01:45", "2026-10-25 00:30"),
        ("0 3 * * *", "UTC", "2026-05-01 02:59:59", "2026-04-30 03:00"),
        ("0 0 29 2 *", "UTC", "2027-06-01 00:00", "2024-02-29 00:00"),
    ],
)
def test_the_latest_tick_is_the_last_one_at_or_before_the_instant(
    cron: str, zone: str, at: str, expected: str
) -> None:
    assert latest_tick(CronSchedule(cron, zone), utc(at)) == utc(expected)


def test_after_downtime_only_the_latest_missed_tick_is_due() -> None:
    schedule = CronSchedule("0 * * * *", "UTC")
    assert due_tick(schedule, since=utc("2026-05-01 03:00"), now=utc("2026-05-01 07:42")) == utc(
        "2026-05-01 07:00"
    )
    assert due_tick(schedule, since=utc("2026-05-01 07:00"), now=utc("2026-05-01 07:42")) is None
    assert due_tick(schedule, since=utc("2026-05-01 07:00"), now=utc("2026-05-01 08:00")) == utc(
        "2026-05-01 08:00"
    )


def test_a_schedule_created_after_today_s_tick_does_not_fire_it() -> None:
    schedule = CronSchedule("0 3 * * *", "Europe/Berlin")
    created = utc("2026-05-01 09:00")
    assert due_tick(schedule, since=created, now=utc("2026-05-01 09:00:10")) is None
    assert due_tick(schedule, since=created, now=utc("2026-05-02 01:00")) == utc("2026-05-02 01:00")


def test_the_next_fire_time_is_strictly_after_the_instant() -> None:
    schedule = CronSchedule("0 3 * * *", "UTC")
    assert next_fire(schedule, utc("2026-05-01 03:00")) == utc("2026-05-02 03:00")
    assert next_fire(schedule, utc("2026-05-01 02:59:59.999")) == utc("2026-05-01 03:00")


def test_instants_in_other_offsets_give_utc_ticks() -> None:
    schedule = CronSchedule("0 12 * * *", "Europe/Berlin")
    after = datetime(2026, 7, 1, 8, 0, tzinfo=ZoneInfo("America/New_York"))  # 12:00 UTC, 14:00 CEST
    assert next_fire(schedule, after) == utc("2026-07-02 10:00")
    assert next_fire(schedule, after).tzinfo is UTC


def test_naive_instants_are_refused() -> None:
    schedule = CronSchedule("0 3 * * *")
    with pytest.raises(ValueError, match="aware datetime"):
        next_fire(schedule, datetime(2026, 5, 1))
    with pytest.raises(ValueError, match="aware datetime"):
        latest_tick(schedule, datetime(2026, 5, 1))


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "fields"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@MIDNIGHT", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("  0   3 * *  MON-FRI ", "0 3 * * MON-FRI"),
    ],
)
def test_aliases_and_spacing_are_normalised(alias: str, fields: str) -> None:
    assert check_cron(alias) == fields
    assert CronSchedule(alias).cron == fields


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "not a 5-field cron expression"),
        ("* * * *", "not a 5-field cron expression"),
        ("0 * * * * *", "not a 5-field cron expression"),
        ("0 0 1 1 * 2030", "not a 5-field cron expression"),
        ("@reboot", "unknown alias"),
        ("61 * * * *", "not a valid cron expression"),
        ("*/0 * * * *", "not a valid cron expression"),
        ("0 0 * * FUNDAY", "not a valid cron expression"),
        ("R * * * *", "random (R) and hashed (H)"),
        ("H * * * *", "random (R) and hashed (H)"),
        ("H(0-29) * * * *", "random (R) and hashed (H)"),
        ("0 0 30 2 *", "matches no date"),
        ("0 0 31 4 *", "matches no date"),
    ],
)
def test_invalid_cron_expressions_are_refused_naming_the_field(expression: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=re.escape(message)) as caught:
        CronSchedule(expression, "UTC")
    assert caught.value.field == "cron"
    assert str(caught.value).startswith("cron: ")


@pytest.mark.parametrize(
    ("zone", "suggestion"),
    [
        ("Europe/Berln", "Europe/Berlin"),
        ("europe/berlin", "Europe/Berlin"),
        ("America/NewYork", "America/New_York"),
        ("Mars/Olympus_Mons", None),
        ("", None),
        ("../../etc/passwd", None),
        ("/etc/localtime", None),
        ("localtime", None),
    ],
)
def test_unknown_time_zones_are_refused_with_a_suggestion(zone: str, suggestion: str | None) -> None:
    with pytest.raises(ScheduleError, match="is not an IANA time zone") as caught:
        CronSchedule("0 3 * * *", zone)
    assert caught.value.field == "timezone"
    if suggestion:
        assert f"did you mean {suggestion!r}" in caught.value.message


@pytest.mark.parametrize(
    "zone", ["UTC", "Etc/UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]
)
def test_iana_time_zones_are_accepted(zone: str) -> None:
    assert CronSchedule("0 3 * * *", zone).timezone == zone


def test_day_names_month_names_and_last_day_are_understood() -> None:
    assert fires(CronSchedule("0 0 L * *"), utc("2026-02-01 00:00"), 1) == [utc("2026-02-28 00:00")]
    assert fires(CronSchedule("0 0 1 JAN *"), utc("2026-02-01 00:00"), 1) == [utc("2027-01-01 00:00")]
    assert fires(CronSchedule("0 0 * * 1#2"), utc("2026-01-01 00:00"), 1) == [utc("2026-01-12 00:00")]


# --- against a brute-force reading of the rules --------------------------------------------------


def reference_ticks(cron: str, zone_name: str, start: datetime, end: datetime) -> list[datetime]:
    """Every minute in [start, end) that the module docstring's rules make a tick, found by brute
    force: match each wall-clock minute; a repeated wall time fires at its first pass (both passes
    when every hour matches); the wall times skipped by a jump fire at the jump."""
    zone = ZoneInfo(zone_name)
    every_hour = croniter(cron).expanded[1] == ["*"]
    ticks = []
    for minute in minutes(start, end):
        wall = minute.astimezone(zone).replace(tzinfo=None)
        earlier_wall = (minute - timedelta(minutes=1)).astimezone(zone).replace(tzinfo=None)
        skipped = minutes(earlier_wall + timedelta(minutes=1), wall)  # empty unless the clock jumped
        first_pass = wall.replace(tzinfo=zone, fold=0).astimezone(UTC) == minute
        if (croniter.match(cron, wall) and (first_pass or every_hour)) or any(
            croniter.match(cron, w) for w in skipped
        ):
            ticks.append(minute)
    return ticks


def minutes(start: datetime, end: datetime) -> Iterator[datetime]:
    while start < end:
        yield start
        start += timedelta(minutes=1)


@pytest.mark.parametrize(
    ("zone", "start"),
    [
        ("Europe/Berlin", "2026-03-28 20:00"),
        ("Europe/Berlin", "2026-10-24 20:00"),
        ("America/New_York", "2026-03-08 02:00"),
        ("America/New_York", "2026-11-01 01:00"),
        ("Australia/Lord_Howe", "2026-04-04 10:00"),  # a 30-minute change
    ],
)
@pytest.mark.parametrize("cron", ["*/20 * * * *", "30 2 * * *", "0 * * * *", "45 1,2 * * *", "15 1-3 * * *"])
def test_next_fire_and_latest_tick_agree_with_brute_force_around_transitions(
    cron: str, zone: str, start: str
) -> None:
    begin, end = utc(start), utc(start) + timedelta(hours=10)
    expected = reference_ticks(cron, zone, begin, end)
    schedule = CronSchedule(cron, zone)
    got: list[datetime] = []
    tick = next_fire(schedule, begin - timedelta(seconds=1))
    while tick < end:
        got.append(tick)
        tick = next_fire(schedule, tick)
    assert got == expected
    for probe in minutes(begin, end):
        if probe.minute % 7 == 0:
            before = [t for t in expected if t <= probe]
            if before:
                assert latest_tick(schedule, probe) == before[-1]
