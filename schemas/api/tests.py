"""Test results and coverage as the API shows them: a run's test summary and cases, one test's
history, flaky and quarantined tests, and coverage (rates in percent).

`ResultSummary.from_stored` reads the `test_summary` a worker stores on an attempt; a summary of
several stages is their field-by-field sum (`ResultSummary.added`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.api.common import Page
from schemas.states import TestStatus

_COUNTS = ("total", "passed", "failed", "errored", "skipped", "flaky", "quarantined")


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class ResultSummary(BaseModel):
    """How many tests did what. A quarantined test that failed counts in `failed` (or `errored`)
    and in `quarantined`."""

    total: int = 0
    passed: int = 0
    failed: int = 0
    errored: int = 0
    skipped: int = 0
    flaky: int = Field(
        default=0,
        description="Tests that passed after failing on the same commit (an earlier attempt of "
        "the run, another run of the sha) or that their framework reran, and failures of tests "
        "that passed elsewhere on the same commit.",
    )
    quarantined: int = Field(
        default=0,
        description="Failures (failed or errored) of tests that were quarantined when they ran: "
        "counted in `failed`/`errored` as well, they did not fail the stage.",
    )
    duration_s: float = 0.0

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any]) -> ResultSummary:
        """The summary a worker stored (missing or broken counts read as 0)."""
        duration = stored.get("duration_s")
        if not isinstance(duration, int | float) or isinstance(duration, bool) or not duration >= 0:
            duration = 0.0
        return cls(
            **{name: _count(stored.get(name)) for name in _COUNTS}, duration_s=round(float(duration), 3)
        )

    @classmethod
    def of_stored(cls, stored: Iterable[Mapping[str, Any] | None]) -> ResultSummary | None:
        """The sum of the stored summaries that exist; None when none does."""
        found = [cls.from_stored(s) for s in stored if s is not None]
        return cls.added(found) if found else None

    @classmethod
    def added(cls, summaries: Iterable[ResultSummary]) -> ResultSummary:
        items = list(summaries)
        return cls(
            **{name: sum(getattr(s, name) for s in items) for name in _COUNTS},
            duration_s=round(sum(s.duration_s for s in items), 3),
        )


class ReportError(BaseModel):
    file: str
    reason: str


class StageResults(BaseModel):
    stage: str
    attempt: int = Field(description="The stage's current attempt, whose reports these are.")
    summary: ResultSummary | None = Field(description="Null when the attempt stored no test report.")
    report_errors: list[ReportError] = Field(description="Report files that could not be read, and why.")


class RunResults(BaseModel):
    summary: ResultSummary = Field(
        description="The sum over each stage's current attempt (all zeros when no stage has reports)."
    )
    stages: list[StageResults] = Field(
        description="The stages whose current attempt has test reports or report errors, in run order."
    )


class CaseOut(BaseModel):
    id: int = Field(description="Increasing; the cursor order of lists.")
    key: str = Field(description="The test's stable key across runs (its history is under this key).")
    name: str
    classname: str
    file: str | None
    line: int | None
    status: TestStatus
    duration_s: float
    message: str | None = Field(description="The failure, error or skip message.")
    stage: str
    attempt: int
    flaky: bool
    quarantined: bool = Field(description="Whether the test was quarantined when this case ran.")


class CaseHistoryEntry(BaseModel):
    case_id: int
    run_id: uuid.UUID
    run_number: int
    ref: str
    sha: str | None
    stage: str
    attempt: int
    status: TestStatus
    duration_s: float
    message: str | None
    flaky: bool
    quarantined: bool
    created_at: AwareDatetime


class FlakyTestOut(BaseModel):
    key: str
    name: str
    classname: str
    file: str | None
    flaky_count: int = Field(description="Runs in the window with a case of this test marked flaky.")
    last_flake_at: AwareDatetime | None = Field(
        description="The latest flaky case or flip on the default branch."
    )
    flip_rate: float | None = Field(
        description="Changes between consecutive results / (results - 1) over `runs_considered` "
        "runs of the default branch (a fraction, 0..1); null with fewer than two results."
    )
    flips: int = Field(description="Changes between consecutive results on the default branch.")
    runs_considered: int = Field(
        description="Runs of the default branch in the window with a result of this test (at most 50)."
    )
    quarantined: bool


class FlakyPage(Page[FlakyTestOut]):
    window: str = Field(description="The window asked for, e.g. `30d`.")
    since: AwareDatetime
    ref: str = Field(description="The default branch whose runs the flip rate looks at.")


class QuarantineRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=1000, description="Why, for the team.")


class QuarantineOut(BaseModel):
    key: str
    name: str | None
    classname: str | None
    file: str | None
    reason: str | None
    quarantined_by: uuid.UUID | None = Field(description="Null when quarantined automatically.")
    created_at: AwareDatetime


# -- coverage -----------------------------------------------------------------------------------
_PERCENT = "Percent covered (0..100, 2 decimals); null when there was nothing to count."


class CoverageTotals(BaseModel):
    line_rate: float | None = Field(description=_PERCENT)
    branch_rate: float | None = Field(description=_PERCENT)
    lines_covered: int
    lines_valid: int
    branches_covered: int
    branches_valid: int


class FileCoverage(CoverageTotals):
    path: str


class StageCoverage(CoverageTotals):
    stage: str
    attempt: int
    files: list[FileCoverage]


class CoverageBase(BaseModel):
    """The coverage a pull request's run is compared with: the target branch's latest."""

    ref: str
    run_id: uuid.UUID
    run_number: int
    line_rate: float | None = Field(description=_PERCENT)


class RunCoverage(BaseModel):
    overall: CoverageTotals | None = Field(
        description="The stages' counts summed (null when no stage measured coverage). Stages that "
        "measure the same files count them once each."
    )
    stages: list[StageCoverage] = Field(
        description="Each stage's current attempt with coverage, in run order."
    )
    base: CoverageBase | None = Field(
        description="For a pull-request run: the target branch's latest run with coverage."
    )
    delta: float | None = Field(
        description="For a pull-request run: this run's overall line rate minus the base's, in "
        "percentage points (2 decimals); null when either is unknown."
    )


class CoveragePoint(BaseModel):
    run_id: uuid.UUID
    run_number: int
    ref: str
    sha: str | None
    created_at: AwareDatetime
    line_rate: float | None = Field(description=_PERCENT)
    branch_rate: float | None = Field(description=_PERCENT)


def percent(covered: int, valid: int) -> float | None:
    """`covered / valid` in percent with 2 decimals; None when there is nothing to count."""
    return round(100.0 * covered / valid, 2) if valid > 0 else None


def percent_of(rate: Any) -> float | None:
    """A stored fraction (0..1) in percent with 2 decimals; None for anything else."""
    if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0.0 <= rate <= 1.0:
        return None
    return round(100.0 * rate, 2)
