"""Finding a stage's report files in its workspace, and reading them all into one result.

`collect_reports(workspace, junit=…, coverage=…)` is what the worker calls (in a thread: it is
plain blocking code) after a stage's script ends, with the stage's `reports:` globs. It never
raises for bad input: every file or glob that cannot be used becomes a `ReportProblem`
`{file, reason}` in `report_errors`, and everything else is still read.

The rules, each with the problem it records:

- Globs use the `.comet.yml` glob dialect (`schemas.globs`: `*`, `**`, `?`, `[...]`) on paths
  relative to the workspace. An absolute glob or one with a `..` segment is refused; a glob that
  matches no file is noted (so a stage without results says why).
- Only regular files count; directories that match are ignored. `.git` is never searched.
- A symlink is followed only when it stays inside the workspace (checked on the resolved path,
  and again on the file actually opened, through /proc/self/fd, so a swap between the two cannot
  smuggle another file in); one pointing out of it is refused, as is a dangling one.
- Caps (`ReportLimits`): a file over `max_file_bytes` is skipped, not truncated; so is a file that
  would bring the stage over `max_stage_bytes`; at most `max_files` files are read and
  `max_cases` cases kept. A file that grows past its cap while being read is dropped.
- A JUnit report that breaks off keeps the cases read before the problem (the reason says how
  many); a coverage report that cannot be read contributes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from schemas.globs import check_glob, glob_match
from workers.reports.coverage import CoverageData, CoverageReport, read_coverage
from workers.reports.files import MB, ReportOpener
from workers.reports.junit import CaseResult, JUnitError, parse_junit
from workers.reports.safexml import ReportError
from workers.reports.text import TextLimits

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class ReportLimits:
    max_file_bytes: int = 50 * MB
    max_stage_bytes: int = 200 * MB
    max_files: int = 1_000
    max_cases: int = 250_000
    text: TextLimits = field(default_factory=TextLimits)


@dataclass(frozen=True, slots=True)
class ReportProblem:
    file: str  # the workspace-relative path, or the glob when the glob itself is the problem
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"file": self.file, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class FoundReports:
    junit: tuple[str, ...]  # workspace-relative paths, in glob order, each once
    coverage: tuple[str, ...]
    problems: tuple[ReportProblem, ...]


@dataclass(frozen=True, slots=True)
class StageReports:
    cases: tuple[CaseResult, ...]
    coverage: CoverageReport | None  # None when no coverage report was read
    report_errors: tuple[ReportProblem, ...]
    junit_files: tuple[str, ...]  # the JUnit files read, wholly or in part
    coverage_files: tuple[str, ...]


def collect_reports(
    workspace: Path,
    *,
    junit: str | Sequence[str] = (),
    coverage: str | Sequence[str] | None = None,
    limits: ReportLimits | None = None,
) -> StageReports:
    """Find and read the stage's reports; problems are recorded, never raised."""
    limits = limits or ReportLimits()
    found = find_reports(workspace, junit=junit, coverage=coverage, limits=limits)
    problems = list(found.problems)
    opener = ReportOpener(
        workspace, max_file_bytes=limits.max_file_bytes, max_stage_bytes=limits.max_stage_bytes
    )
    cases: list[CaseResult] = []
    junit_read: list[str] = []
    for rel in found.junit:
        try:
            with opener.open(rel) as stream:
                new = parse_junit(stream, root=workspace, limits=limits.text)
            _keep(cases, new, rel, limits, problems)
            junit_read.append(rel)
        except JUnitError as exc:
            kept = _keep(cases, exc.cases, rel, limits, problems)
            problems.append(
                ReportProblem(rel, exc.reason + (f" ({kept} cases before it were kept)" if kept else ""))
            )
            junit_read.extend([rel] if exc.cases else [])
        except Exception as exc:
            problems.append(_problem(rel, exc))
    data = CoverageData()
    coverage_read: list[str] = []
    for rel in found.coverage:
        try:
            with opener.open(rel) as stream:
                data.merge(read_coverage(stream, root=workspace))
            coverage_read.append(rel)
        except Exception as exc:
            problems.append(_problem(rel, exc))
    return StageReports(
        cases=tuple(cases),
        coverage=data.report() if coverage_read else None,
        report_errors=tuple(problems),
        junit_files=tuple(junit_read),
        coverage_files=tuple(coverage_read),
    )


def find_reports(
    workspace: Path,
    *,
    junit: str | Sequence[str] = (),
    coverage: str | Sequence[str] | None = None,
    limits: ReportLimits | None = None,
) -> FoundReports:
    """The report files the globs name inside `workspace`, and the problems met finding them."""
    limits = limits or ReportLimits()
    problems: list[ReportProblem] = []
    junit_paths = _find(workspace, _as_list(junit), problems)
    coverage_paths = _find(workspace, _as_list(coverage), problems)
    total = len(junit_paths) + len(coverage_paths)
    if total > limits.max_files:
        junit_paths = junit_paths[: limits.max_files]
        coverage_paths = coverage_paths[: limits.max_files - len(junit_paths)]
        problems.append(
            ReportProblem("", f"{total:,} report files matched; only the first {limits.max_files:,} are read")
        )
    return FoundReports(tuple(junit_paths), tuple(coverage_paths), tuple(problems))


def _problem(rel: str, exc: Exception) -> ReportProblem:
    if isinstance(exc, ReportError):
        return ReportProblem(rel, exc.reason)
    # A report must never break the run, not even through a bug of ours.
    return ReportProblem(rel, f"could not be read ({type(exc).__name__}: {exc})")


def _find(workspace: Path, patterns: list[str], problems: list[ReportProblem]) -> list[str]:
    real_root = Path(os.path.realpath(workspace))
    paths: dict[str, None] = {}
    for pattern in patterns:
        noted = len(problems)
        matches = _matches(workspace, real_root, pattern, problems)
        if not matches and len(problems) == noted:  # say nothing more when a refusal explains it
            problems.append(ReportProblem(pattern, "no file matches this glob"))
        paths.update(dict.fromkeys(matches or []))
    return list(paths)


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _matches(
    workspace: Path, real_root: Path, pattern: str, problems: list[ReportProblem]
) -> list[str] | None:
    """Workspace-relative files matching `pattern`, sorted; None when the glob itself is refused."""
    refusal = _refusal(pattern)
    if refusal:
        problems.append(ReportProblem(pattern, refusal))
        return None
    pattern = pattern.strip()
    while pattern.startswith("./"):
        pattern = pattern[2:]
    if not _GLOB_CHARS & set(pattern):  # a plain path: no need to walk anything
        exists = (workspace / pattern).exists() or (workspace / pattern).is_symlink()
        return [pattern] if exists and _usable(workspace, real_root, pattern, problems) else []
    segments = pattern.split("/")
    fixed = 0
    while fixed < len(segments) - 1 and not _GLOB_CHARS & set(segments[fixed]):
        fixed += 1
    base = "/".join(segments[:fixed])
    if base and not _inside(real_root, workspace / base):
        problems.append(ReportProblem(base, "a symlink to outside the workspace: refused"))
        return []
    candidates: list[str] = []
    for directory, dirnames, filenames in os.walk(workspace / base if base else workspace):
        dirnames[:] = sorted(name for name in dirnames if name != ".git")
        rel_dir = os.path.relpath(directory, workspace)
        prefix = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
        candidates.extend(prefix + name for name in sorted(filenames) if glob_match(pattern, prefix + name))
    return [rel for rel in candidates if _usable(workspace, real_root, rel, problems)]


def _refusal(pattern: str) -> str:
    text = pattern.strip()
    if not text:
        return "an empty glob"
    if "\x00" in text:
        return "a glob cannot contain a NUL character"
    if text.startswith(("/", "\\")) or (len(text) > 1 and text[1] == ":" and text[0].isalpha()):
        return "an absolute path: report globs are relative to the workspace"
    if ".." in text.replace("\\", "/").split("/"):
        return "'..' is not allowed: reports must be inside the workspace"
    try:
        check_glob(text)
    except ValueError as exc:
        return str(exc)
    return ""


def _usable(workspace: Path, real_root: Path, rel: str, problems: list[ReportProblem]) -> bool:
    """Whether `rel` is a regular file inside the workspace once symlinks are resolved."""
    path = workspace / rel
    if not _inside(real_root, path):
        problems.append(ReportProblem(rel, "a symlink to outside the workspace: refused"))
        return False
    if path.is_symlink() and not path.exists():
        problems.append(ReportProblem(rel, "a dangling symlink"))
        return False
    return path.is_file()


def _inside(real_root: Path, path: Path | str) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(real_root)


def _keep(
    cases: list[CaseResult],
    new: Sequence[CaseResult],
    rel: str,
    limits: ReportLimits,
    problems: list[ReportProblem],
) -> int:
    room = max(limits.max_cases - len(cases), 0)
    cases.extend(new[:room])
    if len(new) > room:
        problems.append(
            ReportProblem(
                rel,
                f"{len(new) - room:,} test cases over the limit of {limits.max_cases:,} per stage were not kept",
            )
        )
    return min(len(new), room)
