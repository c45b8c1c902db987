"""Coverage reports: Cobertura XML and lcov, read into line and branch counts per file.

Formats, as their writers produce them (fixtures in tests/fixtures/reports/coverage/):

- **Cobertura XML** from coverage.py (`coverage xml`), Istanbul/nyc/c8 (`cobertura` reporter)
  and JaCoCo converted by cover2cover. Counted from each `<class>`'s own `<lines>` (never the
  copies under `<methods>`): a line with `hits > 0` is covered; `branch="true"` with
  `condition-coverage="50% (1/2)"` adds 2 branches of which 1 covered. A file's path is its
  `filename` joined to the report's `<source>` when there is exactly one, then made relative to
  `root` when under it. Istanbul and cover2cover declare `<!DOCTYPE coverage SYSTEM
  "http://cobertura.sourceforge.net/xml/coverage-04.dtd">`: that DOCTYPE (and 01 to 03) is allowed
  without an internal subset and never fetched; any other DTD or entity is refused (safexml).
- **lcov** tracefiles (`.info`) from Istanbul/nyc/c8, geninfo/genhtml and others: `SF:` opens a
  file's record and `end_of_record` closes it; `DA:line,count[,checksum]` is a line,
  `BRDA:line,block,branch,taken` a branch (`-` = never evaluated, so not covered). `LF`, `LH`,
  `BRF` and `BRH` are ignored: the counts are recomputed from `DA`/`BRDA`.

The same file seen twice (two classes of one file, a file in two lcov test sections, two
reports of one stage) is merged line by line: a line is covered when any report covers it, and a
line's branches count the most any report saw. Totals are summed over the merged files, so the
overall and per-file figures always agree. Rates are fractions in [0, 1] (a stage's
`coverage: {min: 80}` is a percentage); a rate is None when there is nothing to count (no
branches at all, or no lines).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from xml.etree.ElementTree import Element

from workers.reports.safexml import ReportError, Source, iter_events, local_name

COBERTURA_DOCTYPES = frozenset(f"http://cobertura.sourceforge.net/xml/coverage-0{n}.dtd" for n in range(1, 5))
_CONDITION = re.compile(r"\((\d+)\s*/\s*(\d+)\)")
_LCOV_PATH_CHARS = 4_096


@dataclass(frozen=True, slots=True)
class FileCoverage:
    path: str
    lines_valid: int
    lines_covered: int
    branches_valid: int
    branches_covered: int

    @property
    def line_rate(self) -> float | None:
        return _rate(self.lines_covered, self.lines_valid)

    @property
    def branch_rate(self) -> float | None:
        return _rate(self.branches_covered, self.branches_valid)


@dataclass(frozen=True, slots=True)
class CoverageReport:
    files: tuple[FileCoverage, ...]  # sorted by path
    lines_valid: int
    lines_covered: int
    branches_valid: int
    branches_covered: int

    @property
    def line_rate(self) -> float | None:
        return _rate(self.lines_covered, self.lines_valid)

    @property
    def branch_rate(self) -> float | None:
        return _rate(self.branches_covered, self.branches_valid)


@dataclass
class _FileLines:
    lines: dict[int, bool] = field(default_factory=dict)
    branches: dict[int, tuple[int, int]] = field(default_factory=dict)  # line -> (covered, valid)


class CoverageData:
    """Line-level coverage being gathered from one or more reports; `report()` sums it up."""

    def __init__(self) -> None:
        self._files: dict[str, _FileLines] = {}

    def add_line(self, path: str, line: int, covered: bool) -> None:
        lines = self._file(path).lines
        lines[line] = lines.get(line, False) or covered

    def add_branches(self, path: str, line: int, covered: int, valid: int) -> None:
        branches = self._file(path).branches
        old_covered, old_valid = branches.get(line, (0, 0))
        branches[line] = (max(old_covered, min(covered, valid)), max(old_valid, valid))

    def merge(self, other: CoverageData) -> None:
        for path, data in other._files.items():
            for line, hit in data.lines.items():
                self.add_line(path, line, hit)
            for line, (covered, valid) in data.branches.items():
                self.add_branches(path, line, covered, valid)

    def report(self) -> CoverageReport:
        files = tuple(
            FileCoverage(
                path=path,
                lines_valid=len(data.lines),
                lines_covered=sum(data.lines.values()),
                branches_valid=sum(valid for _, valid in data.branches.values()),
                branches_covered=sum(covered for covered, _ in data.branches.values()),
            )
            for path, data in sorted(self._files.items())
        )
        return CoverageReport(
            files=files,
            lines_valid=sum(f.lines_valid for f in files),
            lines_covered=sum(f.lines_covered for f in files),
            branches_valid=sum(f.branches_valid for f in files),
            branches_covered=sum(f.branches_covered for f in files),
        )

    def _file(self, path: str) -> _FileLines:
        return self._files.setdefault(path, _FileLines())


def parse_coverage(source: Source, *, root: Path | None = None) -> CoverageReport:
    """The coverage in one Cobertura or lcov report; ReportError when it cannot be read."""
    return read_coverage(source, root=root).report()


def read_coverage(source: Source, *, root: Path | None = None) -> CoverageData:
    """One report's line-level data, its format told by its first character (`<` for XML)."""
    if isinstance(source, Path):
        try:
            with source.open("rb") as stream:
                return read_coverage(stream, root=root)
        except OSError as exc:
            raise ReportError(f"cannot read the file: {exc.strerror or exc}") from None
    start = source.read(1024).lstrip(b"\xef\xbb\xbf \t\r\n")
    source.seek(0)
    if not start:
        raise ReportError("the coverage report is empty")
    return read_cobertura(source, root=root) if start.startswith(b"<") else read_lcov(source, root=root)


def read_cobertura(source: Source, *, root: Path | None = None) -> CoverageData:
    data = CoverageData()
    sources: list[str] = []
    stack: list[str] = []
    path = ""
    for event, element in iter_events(source, allowed_doctypes=COBERTURA_DOCTYPES):
        tag = local_name(element.tag)
        if event == "start":
            if not stack and tag != "coverage":
                raise ReportError(f"not a Cobertura report: the root element is <{tag}>, not <coverage>")
            if tag == "class":
                path = _cobertura_path(element.get("filename") or element.get("name") or "", sources, root)
            stack.append(tag)
            continue
        stack.pop()
        if tag == "source" and element.text and element.text.strip():
            sources.append(element.text.strip())
        elif tag == "line" and stack[-2:] == ["class", "lines"]:
            _add_cobertura_line(data, path, element)
        if tag in ("line", "class", "package", "method"):
            element.clear()
    return data


def read_lcov(source: Source, *, root: Path | None = None) -> CoverageData:
    if isinstance(source, Path):
        with source.open("rb") as stream:
            return read_lcov(stream, root=root)
    data = CoverageData()
    path: str | None = None
    branches: dict[tuple[str, int, str, str], bool] = {}
    seen_record = False
    text = io.TextIOWrapper(source, encoding="utf-8", errors="replace", newline=None)
    for number, raw in enumerate(text, start=1):
        line = raw.strip()
        kind, _, value = line.partition(":")
        if kind == "SF":
            path, seen_record = _relative(value.replace("\x00", "")[:_LCOV_PATH_CHARS], root), True
        elif line == "end_of_record":
            path = None
        elif kind in ("DA", "BRDA"):
            if path is None:
                raise ReportError(f"line {number}: {kind} outside a file's record (no SF: before it)")
            fields = value.split(",")
            try:
                if kind == "DA":
                    data.add_line(path, int(fields[0]), _count(fields[1]) > 0)
                else:
                    taken = fields[3].strip()
                    key = (path, int(fields[0]), fields[1], fields[2])
                    branches[key] = branches.get(key, False) or (taken != "-" and _count(taken) > 0)
            except (IndexError, ValueError):
                raise ReportError(f"line {number}: malformed {kind} record {line[:80]!r}") from None
    text.detach()
    if not seen_record:
        raise ReportError("not an lcov report: it has no SF: record")
    per_line: dict[tuple[str, int], tuple[int, int]] = {}
    for (file, line_number, _, _), covered in branches.items():
        hit, valid = per_line.get((file, line_number), (0, 0))
        per_line[(file, line_number)] = (hit + covered, valid + 1)
    for (file, line_number), (hit, valid) in per_line.items():
        data.add_branches(file, line_number, hit, valid)
    return data


def _add_cobertura_line(data: CoverageData, path: str, element: Element) -> None:
    try:
        line = int(element.get("number") or "")
        covered = _count(element.get("hits") or "0") > 0
    except ValueError:
        return  # a line without a usable number or hit count cannot be counted
    data.add_line(path, line, covered)
    if (element.get("branch") or "").lower() == "true":
        match = _CONDITION.search(element.get("condition-coverage") or "")
        if match:
            data.add_branches(path, line, int(match.group(1)), int(match.group(2)))


def _cobertura_path(filename: str, sources: list[str], root: Path | None) -> str:
    filename = filename.replace("\\", "/")
    if len(sources) == 1 and not filename.startswith("/"):
        filename = f"{sources[0].rstrip('/')}/{filename}"
    return _relative(filename, root)


def _relative(path: str, root: Path | None) -> str:
    if root is not None and path.startswith("/"):
        try:
            return PurePosixPath(path).relative_to(root.as_posix()).as_posix()
        except ValueError:
            pass
    while path.startswith("./"):
        path = path[2:]
    return path


def _count(text: str) -> float:
    return float(text.strip())


def _rate(covered: int, valid: int) -> float | None:
    return covered / valid if valid else None
