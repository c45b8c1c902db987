"""Fuzzed test and coverage reports: whatever a stage leaves in its workspace, `parse_junit` answers
cases or a `JUnitError`, `parse_coverage` (Cobertura or lcov) a report or a `ReportError`, and the
lenient text helpers never raise. Anything else would crash the worker's report step instead of
putting a reason on the stage.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from xml.sax.saxutils import quoteattr

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workers.reports.coverage import parse_coverage
from workers.reports.junit import JUnitError, parse_junit
from workers.reports.safexml import ReportError
from workers.reports.text import TextLimits, parse_seconds, truncate

FIXTURES = Path(__file__).parents[3] / "fixtures" / "reports"
REAL = [p.read_bytes() for p in sorted((FIXTURES / "junit").glob("*.xml"))] + [
    p.read_bytes() for p in sorted((FIXTURES / "coverage").iterdir())
]
_BOUNDED = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
_TAGS = st.sampled_from(
    [
        "testsuites",
        "testsuite",
        "testcase",
        "failure",
        "error",
        "skipped",
        "system-out",
        "system-err",
        "properties",
        "property",
        "coverage",
        "sources",
        "source",
        "packages",
        "package",
        "classes",
        "class",
        "methods",
        "method",
        "lines",
        "line",
        "condition",
        "x:testcase",
    ]
)
_ATTRS = st.sampled_from(
    [
        "name",
        "classname",
        "file",
        "line",
        "time",
        "tests",
        "failures",
        "errors",
        "skipped",
        "message",
        "type",
        "number",
        "hits",
        "branch",
        "condition-coverage",
        "filename",
        "line-rate",
        "timestamp",
    ]
)
_VALUES = st.text(max_size=30) | st.sampled_from(
    [
        "",
        "-1",
        "1e999",
        "nan",
        "inf",
        "-inf",
        "9" * 5000,
        "1,234.5",
        "0,25",
        "50% (1/2)",
        "(1/0)",
        "100% (",
        "../../../etc/passwd",
        "/abs/path",
        "C:\\x",
        "\x00",
        "$(touch /tmp/comet-canary)",
        "&amp;",
    ]
)


@st.composite
def _xml(draw: st.DrawFn, depth: int = 0) -> str:
    tag = draw(_TAGS)
    attrs = draw(st.dictionaries(_ATTRS, _VALUES, max_size=4))
    text = "".join(f" {k}={quoteattr(v)}" for k, v in attrs.items() if "\x00" not in v)
    children = draw(st.lists(_xml(depth + 1), max_size=3)) if depth < 4 else []
    body = draw(st.sampled_from(["", "x", "<![CDATA[]]>", "&lt;", "&undefined;", "\x1b[31m"]))
    return f"<{tag}{text}>{body}{''.join(children)}</{tag}>"


_LCOV = st.lists(
    st.sampled_from(
        [
            "TN:",
            "SF:src/a.py",
            "SF:",
            "SF:../../x",
            "DA:1,1",
            "DA:2,0",
            "DA:x,y",
            "DA:1",
            "DA:-1,5",
            "DA:99999999999999999999999,1",
            "DA:1,1e999",
            "DA:1,nan",
            "BRDA:1,0,0,1",
            "BRDA:1,0,0,-",
            "BRDA:1,0",
            "BRDA:a,b,c,d",
            "LF:2",
            "LH:1",
            "end_of_record",
            "",
            "\x00",
            "DA:1,1,checksum",
        ]
    ),
    max_size=30,
).map(lambda lines: "\n".join(lines).encode())


def _junit_or_refused(data: bytes) -> None:
    try:
        cases = parse_junit(io.BytesIO(data), root=Path("/workspace"), limits=TextLimits())
    except JUnitError as exc:
        reason, partial = exc.reason, exc.cases
        assert reason
        assert isinstance(partial, list)
    else:
        assert all(len(c.name) <= TextLimits().name for c in cases)


def _coverage_or_refused(data: bytes) -> None:
    try:
        report = parse_coverage(io.BytesIO(data), root=Path("/workspace"))
    except ReportError as exc:
        reason = exc.reason
        assert reason
    else:
        assert report.lines_covered <= report.lines_valid
        assert report.line_rate is None or 0 <= report.line_rate <= 1


def _both(data: bytes) -> None:
    _junit_or_refused(data)
    _coverage_or_refused(data)


@_BOUNDED
@given(data=st.binary(max_size=500) | st.text(max_size=300).map(str.encode))
def test_any_bytes_are_a_report_or_a_report_error(data: bytes) -> None:
    _both(data)


@_BOUNDED
@given(
    document=_xml(),
    prolog=st.sampled_from(
        ["", '<?xml version="1.0"?>', "\ufeff", '<?xml version="1.0" encoding="latin-1"?>']
    ),
)
def test_structured_but_wrong_xml_is_a_report_or_a_report_error(document: str, prolog: str) -> None:
    _both((prolog + document).encode())


@_BOUNDED
@given(data=_LCOV)
def test_structured_but_wrong_lcov_is_a_report_or_a_report_error(data: bytes) -> None:
    _coverage_or_refused(data)


@_BOUNDED
@given(
    real=st.sampled_from(REAL),
    cut=st.integers(0, 10_000),
    junk=st.binary(max_size=20),
    at=st.integers(0, 10_000),
)
def test_a_real_report_cut_short_or_with_junk_spliced_in_is_a_report_or_a_report_error(
    real: bytes, cut: int, junk: bytes, at: int
) -> None:
    short = real[: cut % (len(real) + 1)]
    _both(short)
    spot = at % (len(real) + 1)
    _both(real[:spot] + junk + real[spot:])


def test_deep_nesting_and_huge_values_are_a_report_or_a_report_error() -> None:
    for data in (
        b"<testsuites>" + b"<testsuite>" * 50_000 + b"</testsuite>" * 50_000 + b"</testsuites>",
        b"<coverage>" + b"<package>" * 50_000 + b"</package>" * 50_000 + b"</coverage>",
        b'<testsuite><testcase name="' + b"n" * 1_000_000 + b'" time="' + b"9" * 5_000 + b'"/></testsuite>',
        b'<coverage><packages><package><classes><class filename="a"><lines><line number="'
        + b"9" * 5_000
        + b'" hits="1"/></lines></class></classes></package></packages></coverage>',
        b"SF:a\nDA:" + b"9" * 5_000 + b",1\nend_of_record\n",
    ):
        _both(data)


@_BOUNDED
@given(
    value=st.none()
    | st.text(max_size=40)
    | st.sampled_from(["1e999", "-0", "nan", "9" * 5000, "1,2,3", ",", "."])
)
def test_parse_seconds_never_raises_and_is_finite_and_not_negative(value: str | None) -> None:
    seconds = parse_seconds(value)
    assert math.isfinite(seconds)
    assert seconds >= 0


@_BOUNDED
@given(text=st.text(max_size=300), limit=st.integers(0, 400))
def test_truncate_never_exceeds_its_limit(text: str, limit: int) -> None:
    assert len(truncate(text, limit)) <= limit
