"""Backup and restore's handling of the PostgreSQL tools they run."""

from __future__ import annotations

import os

import pytest

from cli.backup import BackupError, _run


def test_a_failing_tool_whose_stderr_is_not_utf8_fails_with_its_error_line() -> None:
    # pg_restore quotes the statement it failed on: a corrupted dump puts arbitrary bytes there.
    argv = ["bash", "-c", r"printf 'pg_restore: error: bad byte \xff\xfe here\n' >&2; exit 1"]
    with pytest.raises(BackupError, match=r"restore failed: pg_restore: error: bad byte .* here"):
        _run(argv, dict(os.environ), "restore")
