"""`comet replay webhooks` arguments: the window and the choices, each refused in one clear line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cli.replay_webhooks import ReplayWebhooksError, check_choice, window

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_a_relative_since_is_that_long_ago_and_the_window_is_open_ended() -> None:
    assert window("2h", None, NOW) == (NOW - timedelta(hours=2), None)


def test_iso_moments_without_a_zone_mean_utc() -> None:
    start, end = window("2026-11-29T00:00:00", "2026-11-30", NOW)

    assert start == datetime(2026, 11, 29, tzinfo=UTC)
    assert end == datetime(2026, 11, 30, tzinfo=UTC)


def test_until_before_since_is_refused_naming_both() -> None:
    with pytest.raises(
        ReplayWebhooksError, match=r"--until \(2026-11-30 10:00:00 UTC\) must be after --since"
    ):
        window("1h", "2h", NOW)


def test_a_moment_that_is_neither_iso_nor_relative_is_refused_with_the_accepted_forms() -> None:
    with pytest.raises(ReplayWebhooksError, match=r"is not a moment .*2h, 3d"):
        window("yesterday", None, NOW)


def test_an_unknown_provider_is_refused_with_the_known_ones() -> None:
    with pytest.raises(
        ReplayWebhooksError, match="unknown provider 'gitea': use one of github, gitlab, bitbucket"
    ):
        check_choice("provider", "gitea", ("github", "gitlab", "bitbucket"))


def test_no_choice_is_every_choice() -> None:
    check_choice("outcome", None, ("accepted",))


@pytest.mark.parametrize("since", ["99999999999d", "1e400", "0001-01-01T00:00:00+14:00"])
def test_a_moment_out_of_the_range_of_dates_is_refused_in_one_line(since: str) -> None:
    with pytest.raises(ReplayWebhooksError, match="out of the range of dates"):
        window(since, None, NOW)
