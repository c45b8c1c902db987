"""The scheduler's pure parts: which tick a due schedule fires and when it fires next (missed ticks
collapse into the latest; a re-timed schedule never fires a tick before the one it waited for), the
scheduled run's trigger, and the pipeline schedules a definition asks for, with their stable names."""

from __future__ import annotations

import textwrap
import uuid
from datetime import UTC, datetime

import pytest

from orchestrator.pipeline_schedules import MAX_NAME, desired_schedules, schedule_name
from orchestrator.scheduler import FirePlan, plan_fire, schedule_trigger
from schemas.pipeline import parse_definition


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("cron", "zone", "since", "next_at", "now", "expected"),
    [
        # On time: the tick that came fires; the next is the one after now.
        ("*/10 * * * *", "UTC", "12:00", "12:10", "12:10:00.4", ("12:10", "12:20")),
        # Late by a few seconds: the same.
        ("*/10 * * * *", "UTC", "12:00", "12:10", "12:10:07", ("12:10", "12:20")),
        # After two hours of downtime only the latest missed tick fires.
        ("*/10 * * * *", "UTC", "12:00", "12:10", "14:03", ("14:00", "14:10")),
        # The last tick fired already (a replayed or raced state): nothing fires.
        ("*/10 * * * *", "UTC", "12:10", "12:10", "12:10:30", (None, "12:20")),
        # Re-timed at 12:05 from */10 to 0,30: its next tick is 12:30; 12:00 (after `since`) is
        # a tick of the new timetable that lies before the change, and never fires.
        ("0,30 * * * *", "UTC", "11:50", "12:30", "12:30:01", ("12:30", "13:00")),
        ("0,30 * * * *", "UTC", "11:50", "12:30", "12:20", (None, "12:30")),
        # Created at 12:05 (since = creation): the 12:00 tick is not fired.
        ("0 * * * *", "UTC", "12:05", "13:00", "13:00", ("13:00", "14:00")),
    ],
)
def test_a_due_schedule_fires_the_latest_tick_and_moves_past_now(
    cron: str, zone: str, since: str, next_at: str, now: str, expected: tuple[str | None, str]
) -> None:
    day = "2026-06-01 "
    plan = plan_fire(cron, zone, since=utc(day + since), next_fire_at=utc(day + next_at), now=utc(day + now))
    tick, following = expected
    assert plan == FirePlan(utc(day + tick) if tick else None, utc(day + following))


def test_daylight_saving_ticks_come_from_the_cron_module() -> None:
    # Berlin springs forward on 2026-03-29: 02:30 does not exist and fires at the jump (01:00 UTC).
    plan = plan_fire(
        "30 2 * * *",
        "Europe/Berlin",
        since=utc("2026-03-28 01:30"),
        next_fire_at=utc("2026-03-29 01:00"),
        now=utc("2026-03-29 01:00:01"),
    )
    assert plan == FirePlan(utc("2026-03-29 01:00"), utc("2026-03-30 00:30"))


def test_a_schedule_that_cannot_fire_is_disabled_with_the_reason() -> None:
    plan = plan_fire(
        "0 3 * * *",
        "Mars/Olympus",
        since=utc("2026-01-01 00:00"),
        next_fire_at=None,
        now=utc("2026-01-02 00:00"),
    )
    assert plan.tick is None
    assert plan.next_fire_at is None
    assert plan.problem is not None
    assert "timezone" in plan.problem


def test_a_pipeline_schedule_trigger_names_schedule_source_and_tick() -> None:
    trigger = schedule_trigger(
        name="0 3 * * * UTC refs/heads/main",
        source="pipeline",
        tick=utc("2026-06-01 03:00"),
        suite_id=None,
        suite_name=None,
        suite_stages=None,
    )
    assert trigger == {
        "kind": "schedule",
        "schedule": "0 3 * * * UTC refs/heads/main",
        "source": "pipeline",
        "tick": "2026-06-01T03:00:00+00:00",
    }


def test_a_suite_schedule_trigger_carries_the_suites_stage_selection() -> None:
    suite_id = uuid.uuid4()
    trigger = schedule_trigger(
        name="nightly",
        source="test_suite",
        tick=utc("2026-06-01 03:00"),
        suite_id=suite_id,
        suite_name="nightly",
        suite_stages=["e2e*", "unit"],
    )
    assert trigger["kind"] == "schedule"
    assert trigger["suite_id"] == str(suite_id)
    assert trigger["suite"] == "nightly"
    assert trigger["stages"] == ["e2e*", "unit"]


# -- pipeline schedules -------------------------------------------------------------------------


def test_a_definitions_schedules_are_named_by_what_they_fire_with_defaults_filled_in() -> None:
    definition = parse_definition(
        textwrap.dedent("""\
            on:
              schedule:
                - {cron: "0 3 * * *", timezone: Europe/Berlin, ref: release/1.x}
                - {cron: "@hourly"}
                - {cron: "0  3 * * *", timezone: Europe/Berlin, ref: refs/heads/release/1.x}
            stages:
              a: {run: x}
            """)
    )
    desired = desired_schedules(definition, "refs/heads/main", utc("2026-06-01 12:00"))
    assert desired.problems == []
    assert [(d.name, d.cron, d.timezone, d.ref, d.next_fire_at) for d in desired.schedules] == [
        (
            "0 3 * * * Europe/Berlin refs/heads/release/1.x",
            "0 3 * * *",
            "Europe/Berlin",
            "refs/heads/release/1.x",
            utc("2026-06-02 01:00"),
        ),
        ("0 * * * * UTC refs/heads/main", "0 * * * *", "UTC", "refs/heads/main", utc("2026-06-01 13:00")),
    ]


def test_reordering_entries_keeps_every_schedules_name() -> None:
    entries = ['{cron: "0 3 * * *"}', '{cron: "*/5 * * * *", timezone: Asia/Tokyo}']
    one, two = (
        parse_definition(f"on:\n  schedule: [{a}, {b}]\nstages:\n  a: {{run: x}}\n")
        for a, b in (entries, reversed(entries))
    )
    now = utc("2026-06-01 12:00")
    names = [{d.name for d in desired_schedules(d, "refs/heads/main", now).schedules} for d in (one, two)]
    assert names[0] == names[1]
    assert len(names[0]) == 2


def test_an_entry_with_a_ref_git_would_refuse_is_left_out_and_named() -> None:
    # Parsing refuses such a ref now; a definition stored before that check still has one.
    parsed = parse_definition(
        'on:\n  schedule: [{cron: "0 3 * * *", ref: "a"}, {cron: "0 4 * * *"}]\nstages:\n  a: {run: x}\n'
    )
    stored = [parsed.on.schedule[0].model_copy(update={"ref": "a..b"}), parsed.on.schedule[1]]
    definition = parsed.model_copy(update={"on": parsed.on.model_copy(update={"schedule": stored})})
    desired = desired_schedules(definition, "refs/heads/main", utc("2026-06-01 12:00"))
    assert [d.cron for d in desired.schedules] == ["0 4 * * *"]
    assert len(desired.problems) == 1
    assert desired.problems[0].startswith("on.schedule[0]: ")


def test_a_definition_without_schedules_wants_none() -> None:
    definition = parse_definition("stages:\n  a: {run: x}\n")
    assert desired_schedules(definition, "refs/heads/main", utc("2026-06-01 12:00")).schedules == []


def test_a_name_longer_than_the_column_keeps_a_prefix_and_a_hash_of_the_whole() -> None:
    long_ref = "refs/heads/" + "x" * 400
    name = schedule_name("0 3 * * *", "UTC", long_ref)
    assert len(name) == MAX_NAME
    assert name.startswith("0 3 * * * UTC refs/heads/xxx")
    assert name != schedule_name("0 3 * * *", "UTC", long_ref + "y")
    assert schedule_name("0 3 * * *", "UTC", "refs/heads/main") == "0 3 * * * UTC refs/heads/main"
