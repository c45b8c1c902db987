"""glibc malloc tuning at start-up."""

from __future__ import annotations

from cli.memory import tune_malloc


def test_the_mmap_threshold_is_fixed_on_glibc() -> None:
    # This machine runs glibc (Debian): mallopt accepts the setting and says so.
    assert tune_malloc() is True
