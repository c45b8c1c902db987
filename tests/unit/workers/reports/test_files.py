"""Opening report files: what is really opened is checked, and a file growing past its cap fails."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from workers.reports.files import ReportOpener
from workers.reports.safexml import ReportError


def test_a_file_that_grows_past_its_cap_while_being_read_is_refused(tmp_path: Path) -> None:
    (tmp_path / "r.xml").write_bytes(b"x" * 100)
    stream = ReportOpener(tmp_path, max_file_bytes=150, max_stage_bytes=1_000).open("r.xml")
    with (tmp_path / "r.xml").open("ab") as grow:
        grow.write(b"y" * 100)
    with stream, pytest.raises(ReportError, match="grew over the size limit"):
        stream.read()


def test_a_file_can_be_rewound_and_read_again_within_its_cap(tmp_path: Path) -> None:
    (tmp_path / "r.info").write_bytes(b"z" * 100)
    with ReportOpener(tmp_path, max_file_bytes=100, max_stage_bytes=1_000).open("r.info") as stream:
        assert stream.read(10) == b"z" * 10
        stream.seek(0)
        assert stream.read() == b"z" * 100


def test_what_was_really_opened_must_be_inside_the_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "r.xml").write_text("<testsuite/>")
    (tmp_path / "secret.xml").write_text("<testsuite/>")
    opener = ReportOpener(workspace, max_file_bytes=100, max_stage_bytes=1_000)
    # As if the path had been swapped for a symlink to outside between the check and the open.
    monkeypatch.setattr(os.path, "realpath", lambda _: os.fspath(tmp_path / "secret.xml"))
    with pytest.raises(ReportError, match="resolves to outside the workspace"):
        opener.open("r.xml")


def test_a_vanished_file_is_a_report_error(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="cannot be opened"):
        ReportOpener(tmp_path, max_file_bytes=100, max_stage_bytes=100).open("gone.xml")
