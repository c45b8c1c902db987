"""Testing automation end to end on the real services: a real pytest suite runs inside a stage, its
JUnit and Cobertura reports are read by the worker and stored; a flaky test is flagged; once the
failing test is quarantined the next run's stage succeeds and says why; a coverage minimum above
the measured rate fails the stage with the reason; a split stage's legs run every test file once."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import CoverageReport, Project, StageAttempt, TestCase, TestQuarantine
from events.topics import Topics
from tests.integration.conftest import Platform, make_repo
from tests.integration.helpers import add_project, owner_headers, stages_of, start_run, wait_for_run

pytestmark = pytest.mark.integration

PYTEST = f"{sys.executable} -m pytest -p no:cacheprovider -q"
SUITE = """
import os

import pytest

from src.calc import add


def test_passes():
    assert add(1, 2) == 3


def test_fails():
    assert add(2, 2) == 5


def test_skipped():
    pytest.skip("not on this platform")


def test_flaky():
    assert os.environ["COMET_ATTEMPT"] != "1", "fails on the first attempt only"
"""
CALC = """
def add(a, b):
    return a + b


def never_called(x):
    if x:
        return 1
    return 2
"""


def _definition(coverage_min: float | None = None) -> str:
    minimum = f"\n    coverage: {{min: {coverage_min}}}" if coverage_min is not None else ""
    return f"""
stages:
  unit:
    type: test
    retry: 1
    run: {PYTEST} --junitxml=reports/junit.xml --cov=src --cov-branch --cov-report=xml:coverage.xml tests
    reports: {{junit: "reports/*.xml", coverage: coverage.xml}}{minimum}
"""


def _repo(tmp_path: Path, definition: str) -> tuple[Path, str]:
    return make_repo(
        tmp_path / "repo",
        {
            ".comet.yml": definition,
            "src/__init__.py": "",
            "src/calc.py": CALC,
            "tests/__init__.py": "",
            "tests/test_calc.py": SUITE,
        },
    )


async def _cases(sessions: async_sessionmaker[AsyncSession], run_id: uuid.UUID) -> list[TestCase]:
    async with sessions() as session:
        rows = await session.scalars(select(TestCase).where(TestCase.run_id == run_id).order_by(TestCase.id))
        return list(rows.all())


async def _attempts(sessions: async_sessionmaker[AsyncSession], run_id: uuid.UUID) -> list[StageAttempt]:
    async with sessions() as session:
        rows = await session.scalars(
            select(StageAttempt).where(StageAttempt.run_id == run_id).order_by(StageAttempt.number)
        )
        return list(rows.all())


async def test_a_real_pytest_suite_is_reported_flaky_flagged_and_quarantine_lets_the_stage_pass(
    platform: Platform,
    sessions: async_sessionmaker[AsyncSession],
    api_client: httpx.AsyncClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    repo, sha = _repo(tmp_path, _definition())
    project = await add_project(sessions, str(repo))
    first = await start_run(sessions, Topics(namespace), project, sha=sha)
    run = await wait_for_run(sessions, first, timeout_s=120)

    assert run.status == "failed"
    attempts = await _attempts(sessions, first)
    assert [a.number for a in attempts] == [1, 2]
    assert attempts[0].test_summary is not None
    assert attempts[0].test_summary["failed"] == 2
    assert attempts[1].test_summary is not None
    assert attempts[1].test_summary == {
        "total": 4,
        "passed": 2,
        "failed": 1,
        "errored": 0,
        "skipped": 1,
        "flaky": 1,
        "quarantined": 0,
        "duration_s": attempts[1].test_summary["duration_s"],
    }
    assert attempts[1].report_errors == []
    latest = {c.name: c for c in await _cases(sessions, first) if c.attempt == 2}
    assert {name: c.status for name, c in latest.items()} == {
        "test_passes": "passed",
        "test_fails": "failed",
        "test_skipped": "skipped",
        "test_flaky": "passed",
    }
    assert latest["test_flaky"].flaky
    assert not latest["test_fails"].flaky
    assert "assert 4 == 5" in (latest["test_fails"].message or "") + (latest["test_fails"].output or "")
    earlier = {c.name: c for c in await _cases(sessions, first) if c.attempt == 1}
    assert earlier["test_flaky"].flaky, "the failure a later pass proved flaky is marked too"
    async with sessions() as session:
        coverage = (await session.scalars(select(CoverageReport).where(CoverageReport.run_id == first))).all()
    assert [c.attempt_id for c in coverage] == [a.id for a in attempts]
    assert coverage[1].line_rate is not None
    assert 0 < coverage[1].line_rate < 1
    assert "src/calc.py" in {f["path"] for f in coverage[1].files}

    async with sessions.begin() as session:
        session.add(
            TestQuarantine(
                project_id=project, key=latest["test_fails"].key, name="test_fails", reason="known bug"
            )
        )
    second = await start_run(sessions, Topics(namespace), project, sha=sha)
    run = await wait_for_run(sessions, second, timeout_s=120)

    assert run.status == "succeeded", run.failure_reason
    unit = (await stages_of(sessions, second))["unit"]
    assert (unit.status, unit.attempt, unit.exit_code) == ("succeeded", 2, 1)
    assert unit.note == "succeeded although its script failed (exit 1): the failing test is quarantined"
    attempts = await _attempts(sessions, second)
    assert attempts[1].test_summary is not None
    assert attempts[1].test_summary["quarantined"] == 1
    quarantined = [c for c in await _cases(sessions, second) if c.name == "test_fails"]
    assert all(c.quarantined for c in quarantined)
    headers = await owner_headers(api_client, sessions, project)
    shown = (await api_client.get(f"/api/v1/runs/{second}", headers=headers)).json()
    assert [s["note"] for s in shown["stages"]] == [unit.note]
    first_tests = (await api_client.get(f"/api/v1/runs/{first}/tests", headers=headers)).json()["summary"]
    assert (first_tests["total"], first_tests["failed"], first_tests["flaky"]) == (4, 1, 1)


async def test_coverage_below_the_stages_minimum_fails_it_with_the_reason(
    platform: Platform, sessions: async_sessionmaker[AsyncSession], namespace: str, tmp_path: Path
) -> None:
    definition = f"""
stages:
  unit:
    type: test
    retry: 2
    run: {PYTEST} --junitxml=reports/junit.xml --cov=src --cov-report=xml:coverage.xml tests/test_calc.py -k passes
    reports: {{junit: reports/junit.xml, coverage: coverage.xml}}
    coverage: {{min: 99.5}}
"""
    repo, sha = _repo(tmp_path, definition)
    project = await add_project(sessions, str(repo))
    run_id = await start_run(sessions, Topics(namespace), project, sha=sha)
    run = await wait_for_run(sessions, run_id, timeout_s=120)

    assert run.status == "failed"
    unit = (await stages_of(sessions, run_id))["unit"]
    assert (unit.status, unit.attempt, unit.exit_code) == ("failed", 1, 0), (
        "a coverage failure is not retried"
    )
    assert unit.failure_kind == "coverage_below_minimum"
    assert unit.failure_reason is not None
    assert unit.failure_reason.startswith("line coverage ")
    assert unit.failure_reason.endswith(" % is below the minimum of 99.5 %")


async def test_a_reports_glob_that_matches_nothing_or_a_broken_file_is_a_report_error_never_a_failure(
    platform: Platform, sessions: async_sessionmaker[AsyncSession], namespace: str, tmp_path: Path
) -> None:
    definition = """
stages:
  unit:
    type: test
    run: |
      mkdir -p reports
      printf '<testsuite><testcase name="half"' > reports/broken.xml
      ln -s /etc/passwd reports/escape.xml
    reports: {junit: ["reports/*.xml", "nothing/*.xml", "../outside.xml"]}
"""
    repo, sha = make_repo(tmp_path / "repo", {".comet.yml": definition})
    project = await add_project(sessions, str(repo))
    run_id = await start_run(sessions, Topics(namespace), project, sha=sha)
    run = await wait_for_run(sessions, run_id, timeout_s=60)

    assert run.status == "succeeded"
    (attempt,) = await _attempts(sessions, run_id)
    problems = {p["file"]: p["reason"] for p in attempt.report_errors}
    assert set(problems) >= {"reports/broken.xml", "reports/escape.xml", "nothing/*.xml", "../outside.xml"}
    assert attempt.test_summary is not None
    assert attempt.test_summary["total"] == 0


async def test_a_split_stages_legs_run_every_test_file_once_by_recorded_timings(
    platform: Platform, sessions: async_sessionmaker[AsyncSession], namespace: str, tmp_path: Path
) -> None:
    files = {f"tests/e2e/test_{n:02d}.py": f"def test_{n:02d}():\n    pass\n" for n in range(10)}
    definition = f"""
stages:
  e2e:
    type: test
    parallel: 3
    split: {{files: "tests/e2e/test_*.py"}}
    run: |
      echo "leg $COMET_NODE_INDEX of $COMET_NODE_TOTAL"
      {PYTEST} --junitxml=reports/junit.xml $(cat "$COMET_TEST_FILES")
    reports: {{junit: reports/junit.xml}}
"""
    repo, sha = make_repo(tmp_path / "repo", {".comet.yml": definition, "tests/__init__.py": "", **files})
    project = await add_project(sessions, str(repo))
    first = await start_run(sessions, Topics(namespace), project, sha=sha)
    run = await wait_for_run(sessions, first, timeout_s=120)

    assert run.status == "succeeded", run.failure_reason
    stages = await stages_of(sessions, first)
    assert sorted(stages) == ["e2e[1/3]", "e2e[2/3]", "e2e[3/3]"]
    legs = [stages[name].spec["test_files"] for name in sorted(stages)]
    assert sorted(f for leg in legs for f in leg) == sorted(files)
    assert max(map(len, legs)) - min(map(len, legs)) <= 1, "no history: balanced by count"
    ran = [c.name for c in await _cases(sessions, first)]
    assert sorted(ran) == sorted(f"test_{n:02d}" for n in range(10)), "every test once"

    second = await start_run(sessions, Topics(namespace), project, sha=sha)
    assert (await wait_for_run(sessions, second, timeout_s=120)).status == "succeeded"
    again = await stages_of(sessions, second)
    assert sorted(f for s in again.values() for f in s.spec["test_files"]) == sorted(files)


async def test_a_flaky_test_past_the_projects_flip_rate_threshold_is_quarantined_automatically(
    platform: Platform, sessions: async_sessionmaker[AsyncSession], namespace: str, tmp_path: Path
) -> None:
    flipping = "import os\n\n\ndef test_flip():\n    assert int(os.environ['COMET_RUN_NUMBER']) % 2 == 0\n"
    definition = f"""
stages:
  unit:
    type: test
    run: {PYTEST} --junitxml=reports/junit.xml tests
    reports: {{junit: reports/junit.xml}}
"""
    repo, sha = make_repo(
        tmp_path / "repo", {".comet.yml": definition, "tests/__init__.py": "", "tests/test_flip.py": flipping}
    )
    project = await add_project(sessions, str(repo))
    async with sessions.begin() as session:
        row = await session.get(Project, project)
        assert row is not None
        row.auto_quarantine_flip_rate = 0.5
    runs = []
    for _ in range(2):  # run 1 fails test_flip, run 2 (same commit) passes it: flaky, one flip
        run_id = await start_run(sessions, Topics(namespace), project, sha=sha)
        runs.append(await wait_for_run(sessions, run_id, timeout_s=120))

    assert [r.status for r in runs] == ["failed", "succeeded"]
    async with sessions() as session:
        quarantined = (
            await session.scalars(select(TestQuarantine).where(TestQuarantine.project_id == project))
        ).all()
    assert [(q.name, q.quarantined_by) for q in quarantined] == [("test_flip", None)]
    assert quarantined[0].reason == (
        "quarantined automatically: flip rate 1.00 on main reached the project's threshold of 0.5"
    )
