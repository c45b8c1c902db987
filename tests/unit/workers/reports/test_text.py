"""Truncation markers and the lenient reading of report times."""

from __future__ import annotations

import pytest

from workers.reports.text import parse_seconds, truncate


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, 0.0),
        ("", 0.0),
        ("  ", 0.0),
        ("0.123", 0.123),
        ("12", 12.0),
        ("1E-07", 1e-07),
        ("1,234.567", 1234.567),
        ("1,234", 1234.0),
        ("12,345,678.9", 12345678.9),
        ("0,25", 0.25),
        ("0,250", 0.25),
        ("3,5", 3.5),
        ("-1", 0.0),
        ("nan", 0.0),
        ("inf", 0.0),
        ("soon", 0.0),
    ],
)
def test_times_are_read_as_tools_write_them(value: str | None, seconds: float) -> None:
    assert parse_seconds(value) == pytest.approx(seconds)


def test_text_that_fits_is_kept_whole() -> None:
    assert truncate("abc", 3) == "abc"


def test_cut_text_keeps_its_start_and_says_how_long_it_was() -> None:
    cut = truncate("x" * 5_000, 100)
    assert len(cut) == 100
    assert cut.startswith("xxx")
    assert cut.endswith(" …[truncated: 5,000 characters in all]")


def test_a_limit_shorter_than_the_marker_still_holds() -> None:
    assert len(truncate("x" * 5_000, 10)) == 10
