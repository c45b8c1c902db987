"""`comet replay events`: the moments and topic names it accepts, and its summary lines."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import pytest

from cli.moments import parse_moment
from cli.replay_events import ReplayEventsError, summary, window
from config.settings import CommonSettings
from events.history import Window
from events.replay import ReplayOutcome
from events.topics import Topics

NOW = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
SETTINGS = CommonSettings(topic_namespace="acme")


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2h", NOW - timedelta(hours=2)),
        ("3d", NOW - timedelta(days=3)),
        ("1h30m", NOW - timedelta(minutes=90)),
        ("2026-11-30T12:00:00Z", datetime(2026, 11, 30, 12, tzinfo=UTC)),
        ("2026-11-30T13:00:00+01:00", datetime(2026, 11, 30, 13, tzinfo=timezone(timedelta(hours=1)))),
        ("2026-11-29", datetime(2026, 11, 29, tzinfo=UTC)),  # no zone: UTC
    ],
)
def test_a_moment_is_iso_8601_or_how_long_ago(text: str, moment: datetime) -> None:
    assert parse_moment(text, NOW) == moment


def test_a_moment_that_is_neither_says_which_forms_are_accepted() -> None:
    with pytest.raises(
        ValueError, match=r"'yesterday' is not a moment \(use ISO 8601 .* or how long ago: 2h, 3d\)"
    ):
        parse_moment("yesterday", NOW)


@pytest.mark.parametrize(
    ("name", "topic"),
    [
        ("run-commands", "acme.run-commands"),
        ("webhooks", "acme.webhooks"),
        ("stage-results", "acme.stage-results"),
        ("run-status", "acme.run-status"),
        ("dead-letters", "acme.dead-letters"),
        ("dispatch.default", "acme.dispatch.default"),
        ("dispatch.gpu-large", "acme.dispatch.gpu-large"),
        ("acme.run-commands", None),  # the namespace is applied, never given
        ("dispatch.", None),
        ("dispatch.Bad Pool", None),
        ("runs", None),
    ],
)
def test_a_topic_is_named_without_its_namespace(name: str, topic: str | None) -> None:
    assert Topics("acme").by_logical_name(name) == topic


def test_the_window_applies_the_namespace_and_reads_both_ends() -> None:
    w = window(SETTINGS, "stage-results", "2h", "1h", NOW)
    assert w == Window("acme.stage-results", NOW - timedelta(hours=2), NOW - timedelta(hours=1))
    assert window(SETTINGS, "stage-results", "2h", None, NOW).until is None


@pytest.mark.parametrize(
    ("topic", "since", "until", "message"),
    [
        (
            "runs",
            "2h",
            None,
            "unknown topic 'runs': use one of webhooks, run-commands, stage-results, "
            "run-status, dead-letters, dispatch.POOL",
        ),
        ("webhooks", "soon", None, "'soon' is not a moment"),
        (
            "webhooks",
            "1h",
            "2h",
            "--until (2026-11-30 12:00:00 UTC) must be after --since (2026-11-30 13:00:00 UTC)",
        ),
    ],
)
def test_bad_arguments_are_one_clear_line(topic: str, since: str, until: str | None, message: str) -> None:
    with pytest.raises(ReplayEventsError) as caught:
        window(SETTINGS, topic, since, until, NOW)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_the_summary_says_what_was_scanned_published_and_skipped() -> None:
    w = Window("acme.run-status", NOW - timedelta(hours=1))
    outcome = ReplayOutcome(scanned=12, published=10, skipped=2, by_type=Counter({"run.status_changed": 10}))
    assert summary(w, outcome, dry_run=False) == (
        "scanned 12 events of acme.run-status from 2026-11-30 13:00:00 UTC to now; published 10, "
        "skipped 2 (history only, never published)"
    )


def test_a_dry_run_summary_counts_per_event_type() -> None:
    w = Window("acme.run-commands", NOW - timedelta(hours=1), NOW)
    outcome = ReplayOutcome(scanned=5, by_type=Counter({"run.requested": 4, "run.cancel_requested": 1}))
    assert summary(w, outcome, dry_run=True) == (
        "dry run: scanned 5 events of acme.run-commands from 2026-11-30 13:00:00 UTC to 2026-11-30 14:00:00 UTC; "
        "would publish 5 (run.cancel_requested 1, run.requested 4)"
    )


def test_a_moment_too_far_back_is_a_clear_error_not_an_overflow() -> None:
    with pytest.raises(ValueError, match="out of the range of dates"):
        parse_moment("99999999999d", NOW)
