"""Logging keeps working after a caller swapped sys.stderr for a while and closed its stand-in."""

from __future__ import annotations

import io
import sys

import pytest
import structlog

from config.logging import configure


def test_log_lines_go_to_the_current_stderr_even_after_a_swapped_one_was_closed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    original = sys.stderr
    stand_in = io.StringIO()
    sys.stderr = stand_in  # a CLI run in-process: it configures logging while stderr is captured
    try:
        configure("test", fmt="json")
        structlog.get_logger("t").info("while swapped")
    finally:
        sys.stderr = original
    assert "while swapped" in stand_in.getvalue()
    stand_in.close()  # what a CLI runner does with its captured stream

    structlog.get_logger("t").info("after the swap")

    assert "after the swap" in capsys.readouterr().err
