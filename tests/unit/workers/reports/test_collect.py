"""Collecting a stage's reports from a real workspace on disk: globs, confinement, caps, problems."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from workers.reports.collect import ReportLimits, ReportProblem, collect_reports, find_reports

FIXTURES = Path(__file__).parents[3] / "fixtures" / "reports"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "checkout"
    (ws / "reports").mkdir(parents=True)
    shutil.copy(FIXTURES / "junit" / "pytest.xml", ws / "reports" / "unit.xml")
    shutil.copy(FIXTURES / "junit" / "rspec.xml", ws / "reports" / "rspec.xml")
    shutil.copy(FIXTURES / "coverage" / "istanbul.info", ws / "lcov.info")
    return ws


def reasons(problems: tuple[ReportProblem, ...]) -> dict[str, str]:
    return {problem.file: problem.reason for problem in problems}


def test_junit_and_coverage_globs_are_read_into_one_result(workspace: Path) -> None:
    result = collect_reports(workspace, junit=["reports/*.xml"], coverage="lcov.info")
    assert result.junit_files == ("reports/rspec.xml", "reports/unit.xml")
    assert result.coverage_files == ("lcov.info",)
    assert len(result.cases) == 7 + 4
    assert result.coverage is not None
    assert result.coverage.lines_valid == 8
    assert result.report_errors == ()


def test_recursive_globs_find_nested_reports_but_never_inside_git(workspace: Path) -> None:
    (workspace / "a" / "b").mkdir(parents=True)
    shutil.copy(FIXTURES / "junit" / "gradle.xml", workspace / "a" / "b" / "TEST-x.xml")
    (workspace / ".git").mkdir()
    shutil.copy(FIXTURES / "junit" / "gradle.xml", workspace / ".git" / "TEST-y.xml")
    found = find_reports(workspace, junit=["**/TEST-*.xml"])
    assert found.junit == ("a/b/TEST-x.xml",)


def test_a_file_matched_by_two_globs_is_read_once(workspace: Path) -> None:
    result = collect_reports(workspace, junit=["reports/*.xml", "reports/unit.xml", "./reports/unit.xml"])
    assert result.junit_files == ("reports/rspec.xml", "reports/unit.xml")
    assert len(result.cases) == 11


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("/etc/passwd", "an absolute path"),
        ("../outside.xml", "'..' is not allowed"),
        ("reports/../../outside.xml", "'..' is not allowed"),
        ("C:\\reports\\x.xml", "an absolute path"),
        ("", "an empty glob"),
        ("reports/[z-a].xml", "not a valid glob"),
    ],
)
def test_globs_that_leave_the_workspace_are_refused_with_a_reason(
    workspace: Path, pattern: str, reason: str
) -> None:
    result = collect_reports(workspace, junit=[pattern])
    assert reason in reasons(result.report_errors)[pattern]
    assert result.cases == ()


def test_a_glob_matching_nothing_is_noted(workspace: Path) -> None:
    result = collect_reports(workspace, junit=["out/*.xml"], coverage=["coverage.xml"])
    assert reasons(result.report_errors) == {
        "out/*.xml": "no file matches this glob",
        "coverage.xml": "no file matches this glob",
    }
    assert result.coverage is None


def test_directories_that_match_are_ignored(workspace: Path) -> None:
    (workspace / "reports" / "dir.xml").mkdir()
    result = collect_reports(workspace, junit=["reports/*.xml"])
    assert "reports/dir.xml" not in result.junit_files
    assert result.report_errors == ()


def test_symlinks_out_of_the_workspace_are_refused_and_inside_ones_followed(
    tmp_path: Path, workspace: Path
) -> None:
    secret = tmp_path / "secret.xml"
    shutil.copy(FIXTURES / "junit" / "gradle.xml", secret)
    (workspace / "reports" / "leak.xml").symlink_to(secret)
    (workspace / "reports" / "alias.xml").symlink_to(workspace / "reports" / "unit.xml")
    (workspace / "reports" / "dangling.xml").symlink_to(workspace / "nowhere.xml")
    result = collect_reports(workspace, junit=["reports/*.xml"])
    problems = reasons(result.report_errors)
    assert problems["reports/leak.xml"] == "a symlink to outside the workspace: refused"
    assert problems["reports/dangling.xml"] == "a dangling symlink"
    assert result.junit_files == ("reports/alias.xml", "reports/rspec.xml", "reports/unit.xml")
    assert all(case.classname != "com.acme.greeter.GreeterTest" for case in result.cases)


def test_a_symlinked_directory_out_of_the_workspace_is_not_searched(tmp_path: Path, workspace: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(FIXTURES / "junit" / "gradle.xml", outside / "x.xml")
    (workspace / "linked").symlink_to(outside)
    result = collect_reports(workspace, junit=["linked/*.xml", "linked/x.xml", "**/x.xml"])
    problems = reasons(result.report_errors)
    assert problems["linked"] == "a symlink to outside the workspace: refused"
    assert problems["linked/x.xml"] == "a symlink to outside the workspace: refused"
    assert problems["**/x.xml"] == "no file matches this glob"
    assert result.cases == ()


def test_a_fifo_named_like_a_report_does_not_hang_the_worker(workspace: Path) -> None:
    os.mkfifo(workspace / "reports" / "pipe.xml")
    result = collect_reports(workspace, junit=["reports/pipe.xml"])
    assert result.cases == ()
    assert result.report_errors == (ReportProblem("reports/pipe.xml", "no file matches this glob"),)


def test_a_file_over_the_per_file_cap_is_skipped_whole_with_a_note(workspace: Path) -> None:
    size = (workspace / "reports" / "unit.xml").stat().st_size
    limits = ReportLimits(max_file_bytes=size - 1)
    result = collect_reports(workspace, junit=["reports/unit.xml"], limits=limits)
    assert result.cases == ()
    assert reasons(result.report_errors)["reports/unit.xml"].startswith(
        f"skipped: {size:,} bytes is over the limit"
    )


def test_files_past_the_stage_budget_are_skipped_and_earlier_ones_kept(workspace: Path) -> None:
    first = (workspace / "reports" / "rspec.xml").stat().st_size
    limits = ReportLimits(max_stage_bytes=first + 10)
    result = collect_reports(workspace, junit=["reports/*.xml"], limits=limits)
    assert result.junit_files == ("reports/rspec.xml",)
    assert "over the limit" in reasons(result.report_errors)["reports/unit.xml"]


def test_a_two_gigabyte_report_is_skipped_without_being_read(workspace: Path) -> None:
    with (workspace / "reports" / "huge.xml").open("wb") as huge:
        huge.truncate(2 * 1024**3)  # sparse: costs no disk
    result = collect_reports(workspace, junit=["reports/huge.xml"])
    assert reasons(result.report_errors)["reports/huge.xml"] == (
        "skipped: 2,048.0 MB is over the limit of 50.0 MB per report file"
    )


def test_the_number_of_files_and_of_cases_is_capped(workspace: Path) -> None:
    for n in range(5):
        shutil.copy(FIXTURES / "junit" / "pytest.xml", workspace / "reports" / f"more-{n}.xml")
    result = collect_reports(
        workspace, junit=["reports/*.xml"], limits=ReportLimits(max_files=3, max_cases=10)
    )
    assert len(result.junit_files) == 3
    assert len(result.cases) == 10
    problems = reasons(result.report_errors)
    assert problems[""] == "7 report files matched; only the first 3 are read"
    assert any("not kept" in reason for reason in problems.values())


def test_broken_and_hostile_reports_are_recorded_and_the_rest_still_read(workspace: Path) -> None:
    shutil.copy(FIXTURES / "hostile" / "billion-laughs.xml", workspace / "reports" / "bomb.xml")
    shutil.copy(FIXTURES / "hostile" / "malformed.xml", workspace / "reports" / "cut.xml")
    (workspace / "broken.info").write_text("garbage\n")
    result = collect_reports(workspace, junit=["reports/*.xml"], coverage=["lcov.info", "broken.info"])
    problems = reasons(result.report_errors)
    assert problems["reports/bomb.xml"].startswith("refused: the report declares a DTD")
    assert problems["reports/cut.xml"].startswith("not well-formed XML")
    assert problems["reports/cut.xml"].endswith("(2 cases before it were kept)")
    assert problems["broken.info"] == "not an lcov report: it has no SF: record"
    assert "reports/cut.xml" in result.junit_files
    assert "reports/bomb.xml" not in result.junit_files
    assert len(result.cases) == 2 + 7 + 4
    assert result.coverage_files == ("lcov.info",)


def test_several_coverage_reports_are_merged(workspace: Path) -> None:
    shutil.copy(FIXTURES / "coverage" / "cobertura-coveragepy.xml", workspace / "coverage.xml")
    result = collect_reports(workspace, coverage=["*.info", "coverage.xml"])
    assert result.coverage is not None
    assert result.coverage.lines_valid == 8 + 13


def test_problems_serialise_as_file_and_reason() -> None:
    assert ReportProblem("a.xml", "why").as_dict() == {"file": "a.xml", "reason": "why"}


def test_a_missing_workspace_only_yields_notes(tmp_path: Path) -> None:
    result = collect_reports(tmp_path / "gone", junit="reports/*.xml")
    assert result.report_errors == (ReportProblem("reports/*.xml", "no file matches this glob"),)
