"""decide() weighs a test stage's reports: quarantined failures do not fail it, coverage below its
minimum does; each such verdict is said in a note."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from orchestrator.decide import decide
from orchestrator.model import AttemptFinishedInput, RunState, StageState, TestOutcome
from schemas.states import RunStatus, StageStatus

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _running(*, retry: int = 0, coverage_min: float | None = None) -> RunState:
    stage = StageState(
        name="unit",
        status=StageStatus.RUNNING,
        attempt=1,
        spec={"script": "pytest", "retry": {"count": retry}, "coverage_min": coverage_min},
    )
    return RunState(
        id=uuid.UUID(int=1),
        project_id=uuid.UUID(int=2),
        status=RunStatus.RUNNING,
        ref="refs/heads/main",
        stages={"unit": stage},
    )


def _failed(tests: TestOutcome | None, *, kind: str = "script_failure") -> AttemptFinishedInput:
    return AttemptFinishedInput("unit", 1, "failed", exit_code=1, failure_kind=kind, tests=tests)


def test_a_stage_whose_only_failures_are_quarantined_succeeds_and_says_why() -> None:
    d = decide(_running(retry=2), _failed(TestOutcome(failed=2, quarantined=2)), NOW)
    unit = d.state.stages["unit"]
    assert unit.status is StageStatus.SUCCEEDED
    assert unit.exit_code == 1
    assert unit.note == "succeeded although its script failed (exit 1): the failing 2 tests are quarantined"
    assert d.state.status is RunStatus.SUCCEEDED
    assert d.note == f"stage unit: {unit.note}"
    assert d.commands == ()


@pytest.mark.parametrize(
    ("tests", "kind", "why"),
    [
        (TestOutcome(failed=2, quarantined=1), "script_failure", "one failure is not quarantined"),
        (
            TestOutcome(failed=1, quarantined=1, report_errors=1),
            "script_failure",
            "a report could not be read",
        ),
        (TestOutcome(failed=0, quarantined=0), "script_failure", "no test failed: something else did"),
        (TestOutcome(failed=1, quarantined=1), "timeout", "the stage timed out"),
        (None, "script_failure", "the stage has no reports"),
    ],
)
def test_a_failure_quarantine_cannot_explain_still_fails(
    tests: TestOutcome | None, kind: str, why: str
) -> None:
    d = decide(_running(), _failed(tests, kind=kind), NOW)
    assert d.state.stages["unit"].status is StageStatus.FAILED, why
    assert d.state.stages["unit"].note is None


def test_coverage_below_the_minimum_fails_the_stage_with_the_reason_and_is_not_retried() -> None:
    finished = AttemptFinishedInput("unit", 1, "succeeded", exit_code=0, line_rate=0.7251)
    d = decide(_running(retry=2, coverage_min=80), finished, NOW)
    unit = d.state.stages["unit"]
    assert unit.status is StageStatus.FAILED
    assert unit.failure_kind == "coverage_below_minimum"
    assert unit.failure_reason == "line coverage 72.51 % is below the minimum of 80 %"
    assert d.commands == ()
    assert d.state.failure_reason == "stage unit failed: line coverage 72.51 % is below the minimum of 80 %"


def test_coverage_at_the_minimum_passes_and_none_measured_fails() -> None:
    at_minimum = AttemptFinishedInput("unit", 1, "succeeded", exit_code=0, line_rate=0.8)
    assert (
        decide(_running(coverage_min=80), at_minimum, NOW).state.stages["unit"].status
        is StageStatus.SUCCEEDED
    )
    unmeasured = AttemptFinishedInput("unit", 1, "succeeded", exit_code=0, line_rate=None)
    unit = decide(_running(coverage_min=80), unmeasured, NOW).state.stages["unit"]
    assert unit.status is StageStatus.FAILED
    assert (
        unit.failure_reason == "coverage.min is 80 % but no line coverage was measured (see reports.coverage)"
    )
