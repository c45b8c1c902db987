"""JUnit XML, as the tools really write it, read into typed test cases.

One reader for every writer we have seen (fixtures in tests/fixtures/reports/junit/): pytest,
Jest (jest-junit), Go (gotestsum, go-junit-report), Maven Surefire, Gradle, PHPUnit, RSpec
(rspec_junit_formatter) and .NET (JunitXml.TestLogger). What varies between them:

- the root is `<testsuites>` or a bare `<testsuite>`; suites nest (PHPUnit: class, then data
  provider); a `<testcase>` may sit directly under the root;
- a case's status comes from its children: the first of `<failure>` / `<error>` makes it failed
  or errored, else `<skipped>` (or a `status`/`result` attribute saying skipped, notrun, disabled
  or ignored) makes it skipped, else it passed;
- Surefire's and Gradle's reruns: `<flakyFailure>` / `<flakyError>` mean the test failed and
  then passed within the same run (`flaky=True`, status passed, the message is the failure's);
  `<rerunFailure>` / `<rerunError>` are further failed runs of a failed test; both count in
  `reruns`;
- the message is the element's `message` attribute (or `type`) followed by its text (or its
  `<stackTrace>`); the output is the case's own `<system-out>` then `<system-err>`. Suite-level
  output is not kept: it cannot be attributed to a case;
- `classname` may be empty (gotestsum's TestMain, PHPUnit's .phpt cases): the case's `file`
  (or its suite's) then names it, and failing that the innermost suite's name does;
- `file` is absolute (PHPUnit), `./`-relative (RSpec) or missing: under `root` it is made
  relative to it, so keys do not move with the checkout directory;
- `time` is missing, empty, `1,234.5` or `1E-07` (see `text.parse_seconds`).

Every text field is truncated to `TextLimits` with a marker; the key is computed before that,
from the full texts. A report may hold the same test twice (.NET does, for repeated runs): both
are returned, in document order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal
from xml.etree.ElementTree import Element

from workers.reports.keys import case_key
from workers.reports.safexml import ReportError, Source, iter_events, local_name
from workers.reports.text import TextLimits, parse_seconds, truncate

CaseStatus = Literal["passed", "failed", "errored", "skipped"]
_STATUS_OF = {"failure": "failed", "error": "errored"}
_FLAKY = frozenset({"flakyFailure", "flakyError"})
_RERUN = frozenset({"rerunFailure", "rerunError"})
_SKIPPED_WORDS = frozenset({"skipped", "notrun", "disabled", "ignored"})


@dataclass(frozen=True, slots=True)
class CaseResult:
    """One test case of one report."""

    key: str  # keys.case_key of the full classname, name and file
    name: str
    classname: str
    file: str | None
    line: int | None
    status: CaseStatus
    duration_s: float
    message: str | None  # why it failed, errored, was skipped or was flaky
    output: str | None  # its captured stdout, then stderr
    suite: str  # the innermost <testsuite>'s name, "" when none
    flaky: bool = False  # failed, then passed on a rerun inside this same run
    reruns: int = 0  # further runs the report records (flaky* and rerun* elements)


@dataclass(frozen=True, slots=True)
class CaseSummary:
    total: int
    passed: int
    failed: int
    errored: int
    skipped: int
    flaky: int
    duration_s: float


class JUnitError(ReportError):
    """A JUnit report that could not be read to its end; `cases` holds those read before."""

    def __init__(self, reason: str, cases: Sequence[CaseResult]) -> None:
        super().__init__(reason)
        self.cases = list(cases)


@dataclass(frozen=True, slots=True)
class _Suite:
    name: str
    file: str | None


def parse_junit(
    source: Source, *, root: Path | None = None, limits: TextLimits | None = None
) -> list[CaseResult]:
    """The cases of a JUnit XML report, in document order; JUnitError (with the cases read so
    far) when the report is refused, malformed or not JUnit at all."""
    cases: list[CaseResult] = []
    try:
        _read(source, root, limits or TextLimits(), cases)
    except ReportError as exc:
        raise JUnitError(exc.reason, cases) from None
    return cases


def _read(source: Source, root: Path | None, limits: TextLimits, cases: list[CaseResult]) -> None:
    suites: list[_Suite] = []
    open_elements: list[Element] = []
    for event, element in iter_events(source):
        tag = local_name(element.tag)
        if event == "start":
            if not open_elements and tag not in ("testsuites", "testsuite"):
                raise ReportError(
                    f"not a JUnit report: the root element is <{tag}>, not <testsuites> or <testsuite>"
                )
            if tag == "testsuite":
                suites.append(_Suite(element.get("name") or "", element.get("file")))
            open_elements.append(element)
            continue
        open_elements.pop()
        if tag == "testcase":
            cases.append(_case(element, suites[-1] if suites else None, root, limits))
        elif tag == "testsuite":
            suites.pop()
        else:
            continue
        # Done with it: drop it from its parent so a big report is not kept in memory.
        if open_elements and len(open_elements[-1]) and open_elements[-1][-1] is element:
            del open_elements[-1][-1]


def summarise(cases: Iterable[CaseResult]) -> CaseSummary:
    """Counts by status, flaky cases, and the summed duration."""
    counts = {"passed": 0, "failed": 0, "errored": 0, "skipped": 0}
    flaky = 0
    duration = 0.0
    for case in cases:
        counts[case.status] += 1
        flaky += case.flaky
        duration += case.duration_s
    return CaseSummary(sum(counts.values()), flaky=flaky, duration_s=round(duration, 6), **counts)


def _case(element: Element, suite: _Suite | None, root: Path | None, limits: TextLimits) -> CaseResult:
    name = element.get("name") or ""
    classname = _relative_classname((element.get("classname") or "").strip(), root)
    file = element.get("file") or (suite.file if suite else None)
    file = _relative(file, root) if file else None
    if not classname and not file and suite is not None:
        classname = suite.name
    by_tag: dict[str, list[Element]] = {}
    verdict: Element | None = None
    for child in element:  # most cases have no children at all: this loop is the hot path
        tag = local_name(child.tag)
        by_tag.setdefault(tag, []).append(child)
        if verdict is None and tag in _STATUS_OF:
            verdict = child
    flaky = by_tag.get("flakyFailure", []) + by_tag.get("flakyError", [])
    status: CaseStatus
    if verdict is not None:
        status = "failed" if local_name(verdict.tag) == "failure" else "errored"
        message = _describe([verdict])
    elif "skipped" in by_tag or _skipped_by_attribute(element):
        status = "skipped"
        message = _describe(by_tag.get("skipped", []))
    else:
        status = "passed"
        message = _describe(flaky)
    return CaseResult(
        key=case_key(classname, name, file),
        name=truncate(name, limits.name),
        classname=truncate(classname, limits.classname),
        file=truncate(file, limits.file) if file else None,
        line=_line(element.get("line")),
        status=status,
        duration_s=parse_seconds(element.get("time")),
        message=truncate(message, limits.message) if message else None,
        output=_output(by_tag.get("system-out", []), by_tag.get("system-err", []), limits.output)
        if by_tag
        else None,
        suite=truncate(suite.name, limits.classname) if suite else "",
        flaky=status == "passed" and bool(flaky),
        reruns=len(flaky) + sum(len(by_tag.get(tag, [])) for tag in _RERUN),
    )


def _describe(elements: Sequence[Element]) -> str | None:
    parts: list[str] = []
    for element in elements:
        head = (element.get("message") or element.get("type") or "").strip()
        trace = next((child for child in element if local_name(child.tag) == "stackTrace"), None)
        body = ((trace.text if trace is not None else element.text) or "").strip("\n").rstrip()
        if body.strip() == head:
            body = ""
        parts.append("\n".join(part for part in (head, body) if part))
    text = "\n\n".join(part for part in parts if part).replace("\r\n", "\n")
    return text or None


def _output(out_elements: Sequence[Element], err_elements: Sequence[Element], limit: int) -> str | None:
    out = "".join((child.text or "").strip("\n") for child in out_elements if (child.text or "").strip())
    err = "".join((child.text or "").strip("\n") for child in err_elements if (child.text or "").strip())
    text = f"{out}\n--- stderr ---\n{err}" if out and err else out or err
    return truncate(text.replace("\r\n", "\n"), limit) if text else None


def _skipped_by_attribute(element: Element) -> bool:
    words = (element.get("status"), element.get("result"))
    return any(word is not None and word.strip().lower() in _SKIPPED_WORDS for word in words)


def _relative_classname(classname: str, root: Path | None) -> str:
    """A classname a tool dotted from a directory above the workspace (pytest, when its rootdir is
    found higher up: `.comet.workspaces.<attempt>.checkout.tests.test_x`) loses the workspace's
    part, so a test keeps its key from one attempt to the next. Only prefixes holding at least the
    workspace's last two directories (the attempt's own) are taken off."""
    if root is None or not classname:
        return classname
    parts = [p for p in root.as_posix().split("/") if p]
    for start in range(max(len(parts) - 1, 0)):
        prefix = ".".join(parts[start:]) + "."
        if classname.startswith(prefix):
            return classname[len(prefix) :]
    return classname


def _relative(file: str, root: Path | None) -> str:
    if root is not None and file.startswith("/"):
        try:
            return PurePosixPath(file).relative_to(root.as_posix()).as_posix()
        except ValueError:
            pass
    while file.startswith("./"):
        file = file[2:]
    return file


def _line(value: str | None) -> int | None:
    try:
        line = int(value) if value else None
    except ValueError:
        return None
    return line if line is not None and 0 < line < 2**31 else None
