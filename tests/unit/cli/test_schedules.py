"""`comet schedules`: the table's relative times, and a database that cannot be reached ends in
one clear line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cli import main as cli_main
from cli import schedules as cli_schedules
from cli.schedules import until

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("delta", "shown"),
    [
        (None, "never"),
        (timedelta(seconds=-5), "due"),
        (timedelta(0), "due"),
        (timedelta(seconds=45), "in 45s"),
        (timedelta(minutes=5, seconds=3), "in 5m"),
        (timedelta(hours=3, minutes=20), "in 3h 20m"),
        (timedelta(hours=2), "in 2h"),
        (timedelta(days=6, hours=1, minutes=5), "in 6d 1h"),
    ],
)
def test_the_next_fire_time_is_also_shown_relative_to_now(delta: timedelta | None, shown: str) -> None:
    assert until(None if delta is None else NOW + delta, NOW) == shown


def test_the_command_turns_a_read_failure_into_a_cli_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def unreachable(settings: object) -> None:
        raise cli_schedules.ScheduleListError(
            "cannot read the schedules: the database is unreachable (refused)"
        )

    monkeypatch.setattr(cli_schedules, "load", unreachable)
    monkeypatch.setattr(cli_main, "_settings", lambda cls, process, **kw: object())
    monkeypatch.setattr("sys.argv", ["comet", "schedules"])
    with pytest.raises(SystemExit) as exited:
        cli_main.main()
    assert exited.value.code == 1
    assert capsys.readouterr().err == (
        "comet: cannot read the schedules: the database is unreachable (refused)\n"
    )
