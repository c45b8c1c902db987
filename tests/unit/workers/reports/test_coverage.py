"""Cobertura and lcov as their writers produce them: rates overall and per file, merging, refusals."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from workers.reports.coverage import CoverageData, parse_coverage, read_coverage
from workers.reports.safexml import ReportError

FIXTURES = Path(__file__).parents[3] / "fixtures" / "reports"
COVERAGE = FIXTURES / "coverage"
HOSTILE = FIXTURES / "hostile"


def parse_text(text: str, root: Path | None = None) -> CoverageData:
    return read_coverage(io.BytesIO(text.encode()), root=root)


@pytest.mark.parametrize(
    ("fixture", "root", "lines", "branches", "paths"),
    [
        (
            "cobertura-coveragepy.xml",
            "/home/runner/work/app/app",
            (10, 13),
            (3, 6),
            ["calc/__init__.py", "calc/ops.py"],
        ),
        ("cobertura-istanbul.xml", "/home/runner/work/web/web", (5, 6), (2, 4), ["src/cart.js"]),
        ("cobertura-jacoco.xml", "/nowhere", (4, 5), (3, 4), ["src/main/java/com/acme/ledger/Ledger.java"]),
        ("istanbul.info", "/home/runner/work/web/web", (7, 8), (2, 4), ["src/cart.js", "src/util.js"]),
        ("geninfo.info", "/nowhere", (4, 4), (1, 2), ["src/ledger.c"]),
    ],
)
def test_each_writer_s_report_gives_its_counts_and_workspace_relative_paths(
    fixture: str, root: str, lines: tuple[int, int], branches: tuple[int, int], paths: list[str]
) -> None:
    report = parse_coverage(COVERAGE / fixture, root=Path(root))
    assert (report.lines_covered, report.lines_valid) == lines
    assert (report.branches_covered, report.branches_valid) == branches
    assert [file.path for file in report.files] == paths
    assert report.line_rate == pytest.approx(lines[0] / lines[1])
    assert report.branch_rate == pytest.approx(branches[0] / branches[1])


def test_per_file_figures_add_up_to_the_overall_ones() -> None:
    report = parse_coverage(COVERAGE / "cobertura-coveragepy.xml", root=Path("/home/runner/work/app/app"))
    ops = {file.path: file for file in report.files}["calc/ops.py"]
    assert (ops.lines_covered, ops.lines_valid, ops.branches_covered, ops.branches_valid) == (9, 12, 3, 6)
    assert ops.line_rate == pytest.approx(0.75)
    assert sum(file.lines_valid for file in report.files) == report.lines_valid


def test_lines_listed_under_methods_are_not_counted_twice() -> None:
    report = parse_coverage(COVERAGE / "cobertura-istanbul.xml")
    assert report.lines_valid == 6


def test_a_file_without_branches_has_no_branch_rate() -> None:
    report = parse_coverage(COVERAGE / "istanbul.info", root=Path("/home/runner/work/web/web"))
    util = {file.path: file for file in report.files}["src/util.js"]
    assert util.branch_rate is None
    assert util.line_rate == 1.0


def test_a_report_with_nothing_in_it_has_no_rates() -> None:
    report = parse_text('<coverage line-rate="0"><packages/></coverage>').report()
    assert report.files == ()
    assert (report.line_rate, report.branch_rate) == (None, None)


def test_two_reports_of_one_stage_merge_line_by_line() -> None:
    data = parse_text("SF:a.py\nDA:1,1\nDA:2,0\nBRDA:1,0,0,1\nBRDA:1,0,1,0\nend_of_record\n")
    data.merge(parse_text("SF:a.py\nDA:2,3\nDA:3,0\nBRDA:1,0,0,0\nBRDA:1,0,1,0\nend_of_record\n"))
    report = data.report()
    assert (report.lines_covered, report.lines_valid) == (2, 3)
    assert (report.branches_covered, report.branches_valid) == (1, 2)


def test_lcov_never_evaluated_branches_and_checksums_are_understood() -> None:
    report = parse_text("TN:\nSF:x.c\nDA:1,2,abcdef\nBRDA:1,0,0,-\nBRDA:1,0,1,4\nend_of_record\n").report()
    assert (report.lines_covered, report.branches_covered, report.branches_valid) == (1, 1, 2)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("\n\n", "empty"),
        ("hello\nworld\n", "no SF: record"),
        ("DA:1,1\n", "outside a file's record"),
        ("SF:a.py\nDA:one,1\nend_of_record\n", "line 2: malformed DA record"),
        ("SF:a.py\nBRDA:1,0\nend_of_record\n", "malformed BRDA record"),
        ("<testsuites/>", "root element is <testsuites>"),
        ("<coverage><packages>", "not well-formed"),
    ],
)
def test_unreadable_reports_are_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(ReportError, match=reason):
        parse_text(text)


@pytest.mark.parametrize(
    ("fixture", "reason"),
    [
        ("cobertura-billion-laughs.xml", "DTD"),
        ("cobertura-other-dtd.xml", "file:///etc/passwd"),
        ("billion-laughs.xml", "DTD"),
    ],
)
def test_hostile_cobertura_is_refused(fixture: str, reason: str) -> None:
    with pytest.raises(ReportError, match="refused") as caught:
        parse_coverage(HOSTILE / fixture)
    assert reason in caught.value.reason


def cobertura_with_dtd(dtd: str, line: str) -> str:
    return (
        f'<?xml version="1.0"?><!DOCTYPE coverage SYSTEM "{dtd}">'
        f'<coverage><packages><package><classes><class filename="a.py"><lines>{line}'
        "</lines></class></classes></package></packages></coverage>"
    )


COBERTURA_DTD = "http://cobertura.sourceforge.net/xml/coverage-04.dtd"


def test_an_entity_only_the_unread_cobertura_dtd_could_define_is_refused_in_text() -> None:
    with pytest.raises(ReportError, match="refused: the report uses the entity 'e'"):
        parse_text(cobertura_with_dtd(COBERTURA_DTD, '<line number="1" hits="1">&e;</line>'))


def test_in_an_attribute_such_an_entity_is_dropped_never_expanded() -> None:
    # expat reports skipped entities in text only; in an attribute the reference just vanishes.
    report = parse_text(
        cobertura_with_dtd(COBERTURA_DTD, '<line number="1" hits="&e;"/><line number="2" hits="1"/>')
    )
    assert report.report().lines_valid == 2
    assert report.report().lines_covered == 1


def test_the_allowed_dtd_declaration_alone_parses() -> None:
    text = (COVERAGE / "cobertura-istanbul.xml").read_text()
    assert text.splitlines()[1].startswith("<!DOCTYPE coverage SYSTEM")
    assert parse_text(text).report().lines_valid == 6


def test_a_cobertura_line_without_a_number_or_with_junk_hits_is_skipped() -> None:
    text = (
        '<coverage><packages><package><classes><class filename="a.py"><lines>'
        '<line hits="1"/><line number="2" hits="lots"/><line number="3" hits="1"/>'
        "</lines></class></classes></package></packages></coverage>"
    )
    assert parse_text(text).report().lines_valid == 1


def test_a_path_can_be_read_directly_and_a_missing_one_is_a_report_error(tmp_path: Path) -> None:
    assert parse_coverage(COVERAGE / "geninfo.info").lines_valid == 4
    with pytest.raises(ReportError, match="cannot read"):
        parse_coverage(tmp_path / "missing.info")
