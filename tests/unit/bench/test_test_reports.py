"""Pure parts of the `test_reports` scenario: the generated pytest report (read back by the
product's own parser), the history rows, plan shapes and the ingestion arithmetic."""

from __future__ import annotations

import io
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from bench.references import Reference, References
from bench.scenarios import BenchContext
from bench.scenarios._reports import (
    HISTORY_COLUMNS,
    HistoryRun,
    history_records,
    history_tests,
    plan_nodes,
    plan_shape,
    pytest_junit,
    pytest_tests,
)
from bench.scenarios.test_reports import Budget, Ingest
from bench.stats import summarize
from config.settings import CommonSettings
from workers.reports.junit import parse_junit


def test_the_generated_report_reads_back_with_exactly_its_counts() -> None:
    report = pytest_junit(2_000)
    cases = parse_junit(io.BytesIO(report.xml))
    counts = Counter(c.status for c in cases)
    assert report.total == len(cases) == 2_000
    assert (report.failed, report.errored, report.skipped) == (60, 10, 100)
    assert counts == {
        "passed": report.passed,
        "failed": report.failed,
        "errored": report.errored,
        "skipped": report.skipped,
    }
    assert len({c.key for c in cases}) == 2_000  # every test has its own key
    failing = [c for c in cases if c.status in ("failed", "errored")]
    assert all(c.message and c.output and "--- stderr ---" in c.output for c in failing)
    assert all(c.output is None for c in cases if c.status == "passed")
    assert all(c.message for c in cases if c.status == "skipped")


def test_the_report_looks_like_what_pytest_writes() -> None:
    xml = pytest_junit(50).xml.decode()
    assert xml.startswith('<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests">')
    assert '<testsuite name="pytest" errors="0" failures="2" skipped="2" tests="50"' in xml
    assert "\n<testcase" not in xml  # one line, as pytest writes it
    assert 'classname="tests.' in xml


def test_the_report_is_the_same_for_a_seed_and_differs_across_seeds() -> None:
    assert pytest_junit(300, seed=1) == pytest_junit(300, seed=1)
    assert pytest_junit(300, seed=1).xml != pytest_junit(300, seed=2).xml


def test_shares_over_every_test_are_refused() -> None:
    with pytest.raises(ValueError, match="more than every test"):
        pytest_junit(10, failed_share=0.6, skipped_share=0.6)


def test_tests_are_distinct_and_counted_exactly() -> None:
    tests = pytest_tests(1_234)
    assert len(tests) == 1_234
    assert len({(t.classname, t.name) for t in tests}) == 1_234
    assert pytest_tests(0) == []
    with pytest.raises(ValueError, match="negative"):
        pytest_tests(-1)


def _run() -> HistoryRun:
    return HistoryRun(
        uuid.uuid4(),
        uuid.uuid4(),
        uuid.uuid4(),
        "refs/heads/main",
        "a" * 40,
        datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_history_rows_have_every_column_and_realistic_statuses() -> None:
    tests = history_tests(2_000)
    run, project = _run(), uuid.uuid4()
    rows = [
        dict(zip(HISTORY_COLUMNS, r, strict=True))
        for r in history_records(tests, run, project, stage="unit", seed=3)
    ]
    assert [r["key"] for r in rows] == [t.key for t in tests]
    assert {r["attempt_id"] for r in rows} == {run.attempt_id}
    assert {r["project_id"] for r in rows} == {project}
    statuses = Counter(r["status"] for r in rows)
    assert statuses["skipped"] == sum(t.always_skipped for t in tests) > 0
    assert 0 < statuses["failed"] < 100
    for row in rows:
        if row["status"] == "failed":
            assert row["message"]
            assert row["output"]
        else:
            assert row["output"] is None
        assert row["duration_s"] >= 0
        assert len(row["key"]) == 20


def test_history_rows_differ_from_run_to_run_only_by_seed() -> None:
    tests = history_tests(300)
    run, project = _run(), uuid.uuid4()
    first = list(history_records(tests, run, project, stage="unit", seed=1))
    assert first == list(history_records(tests, run, project, stage="unit", seed=1))
    assert first != list(history_records(tests, run, project, stage="unit", seed=2))


_PLAN: dict[str, Any] = {
    "Node Type": "Nested Loop",
    "Plans": [
        {
            "Node Type": "Limit",
            "Plans": [
                {
                    "Node Type": "Index Only Scan",
                    "Scan Direction": "Backward",
                    "Index Name": "ix_test_cases_history",
                    "Relation Name": "test_cases",
                }
            ],
        },
        {"Node Type": "Index Scan", "Scan Direction": "Forward", "Index Name": "pk_runs"},
        {"Node Type": "Seq Scan", "Relation Name": "runs"},
    ],
}


def test_a_plan_reads_as_one_line() -> None:
    assert plan_shape(_PLAN) == (
        "Nested Loop ← [Limit ← Index Only Scan Backward on ix_test_cases_history; "
        "Index Scan on pk_runs; Seq Scan on runs]"
    )
    assert plan_shape({"Node Type": "Result"}) == "Result"
    names = [n.get("Index Name") for n in plan_nodes(_PLAN)]
    assert names == [None, None, "ix_test_cases_history", "pk_runs", None]


def test_an_ingest_adds_up_and_its_copy_is_what_the_statements_leave() -> None:
    ingest = Ingest(parse_ms=120.0, store_ms=230.0, commit_ms=2.0, lookups_ms=12.0, summary_ms=0.5)
    assert ingest.total_ms == pytest.approx(352.0)
    assert ingest.copy_ms == pytest.approx(217.5)


def _ctx(quick: bool) -> BenchContext:
    ref = Reference("r", summarize([1.0]))
    return BenchContext(
        settings=CommonSettings(),
        samples=100 if quick else 500,
        quick=quick,
        references=References(ref, ref),
    )


def test_the_budget_holds_a_million_rows_and_a_fifth_with_quick() -> None:
    full, quick = Budget.of(_ctx(False)), Budget.of(_ctx(True))
    assert (full.rows, full.keys, full.runs) == (1_000_000, 2_000, 500)
    assert (quick.rows, quick.runs) == (200_000, 500)
    assert quick.ingest_samples < full.ingest_samples
    assert quick.history_samples <= 100 < full.history_samples
