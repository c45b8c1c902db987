"""Test reports: a 10,000-case JUnit file parsed and stored, and a test's history p99 over 1M cases

One fresh, migrated database (`bench_platform`, no Comet process started): the scenario calls the
product's own code, as the worker and the API do.

1. Report ingestion, as the worker does it after a test stage: a pytest-like JUnit XML file of
   10,000 cases (3 % failed with pytest's traceback and captured output, 0.5 % errored, 5 %
   skipped; `_reports.pytest_junit`) in a temporary workspace is read by `collect_reports` in a
   thread (parse), then `store_reports` runs in one transaction (the quarantine and same-sha
   lookups, one COPY into `test_cases`, the attempt's summary), which is committed (store). Each
   sample is a new run of a new commit (run, stage and running attempt inserted directly); one
   warm-up first. The note splits the store: its SELECTs and UPDATE are timed through SQLAlchemy's
   cursor events, the rest is building the records and the COPY; and the same rows are COPYed
   again (rolled back) into copies of the table without its foreign key, and without its indexes,
   to show what each costs.
2. Test-history query: 1,000,000 `test_cases` rows of one project (2,000 tests x 500 runs, one
   stage each; `--quick`: 400 tests, 200,000 rows), COPYed run after run so every index grows as
   in production, then ANALYZE; the query of `GET /projects/{id}/tests/cases/{key}/history` runs
   (the repository's `case_history` with the route's default page of 50, asked as 51) for random
   keys, and one key's plan is shown. Then the ingestion again, with those rows stored.
"""

# ruff: noqa: S311 - seeded pseudo-random test data, never a secret

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.sql import Select

from bench.platform import Platform, bench_platform
from bench.scenarios import BenchContext
from bench.scenarios._reports import (
    HISTORY_COLUMNS,
    HistoryRun,
    HistoryTest,
    JUnitFile,
    history_records,
    history_tests,
    plan_nodes,
    plan_shape,
    pytest_junit,
    pytest_tests,
)
from bench.stats import Aim, Figure, summarize
from config.settings import CommonSettings
from db.engine import make_engine, make_sessionmaker
from db.models import Run, Stage, StageAttempt, TestQuarantine
from db.repositories.test_results import AttemptRef, store_reports
from db.repositories.tests import case_history, history_statement
from schemas.events import TestCounts
from schemas.ids import uuid7
from workers.reports.collect import StageReports, collect_reports

CASES = 10_000
AIM_INGEST_MS = 500.0  # the aim: 10,000 cases in 0.5 s
AIM_CASES_PER_S = 20_000.0
AIM_HISTORY_P99_MS = 50.0
HISTORY_PAGE = 50  # the route's default `limit`; it asks the repository for one more
STAGE = "unit"
QUARANTINED = 25  # keys of the report quarantined in the project (the lookup finds them)
JUNIT_GLOB = "reports/*.xml"
WARMUP = 20
_BEGIN = text("SELECT 1")


@dataclass(frozen=True, slots=True)
class Budget:
    ingest_samples: int
    loaded_samples: int
    keys: int
    runs: int
    history_samples: int
    batch_runs: int  # runs per COPY
    copy_rounds: int

    @classmethod
    def of(cls, ctx: BenchContext) -> Budget:
        if ctx.quick:
            return cls(3, 2, 400, 500, min(ctx.samples, 200), 50, 2)
        return cls(7, 3, 2_000, 500, min(ctx.samples, 500), 50, 3)

    @property
    def rows(self) -> int:
        return self.keys * self.runs


class Seeder:
    """Runs, stages and attempts of the bench project, inserted directly (no orchestrator)."""

    def __init__(self, p: Platform, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.p = p
        self.sessions = sessions
        self.number = 0

    async def runs(self, count: int, *, status: str, start: datetime, step: timedelta) -> list[HistoryRun]:
        made: list[HistoryRun] = []
        async with self.sessions.begin() as session:
            for i in range(count):
                self.number += 1
                at = start + i * step
                ref = "refs/heads/main" if self.number % 5 else f"refs/heads/feature-{self.number}"
                made.append(_add_run(session, self.p, self.number, ref, status, at))
        return made


def _add_run(
    session: AsyncSession, p: Platform, number: int, ref: str, status: str, at: datetime
) -> HistoryRun:
    run_id, stage_id, attempt_id = uuid7(), uuid7(), uuid7()
    sha = f"{random.getrandbits(160):040x}"
    finished = None if status == "running" else at + timedelta(minutes=3)
    session.add(
        Run(
            id=run_id,
            project_id=p.project_id,
            number=number,
            status=status,
            ref=ref,
            sha=sha,
            trigger={"kind": "api", "actor": str(p.user_id), "event": "manual"},
            variables={},
            pipeline_name="ci",
            created_by=p.user_id,
            created_at=at,
            queued_at=at,
            started_at=at,
            finished_at=finished,
        )
    )
    session.add(
        Stage(
            id=stage_id,
            run_id=run_id,
            name=STAGE,
            base_name=STAGE,
            position=0,
            matrix={},
            status=status,
            needs=[],
            pool="default",
            spec={
                "type": "test",
                "run": "pytest --junitxml=reports/junit.xml",
                "reports": {"junit": [JUNIT_GLOB]},
            },
            attempt=1,
            queued_at=at,
            started_at=at,
            finished_at=finished,
        )
    )
    session.add(
        StageAttempt(
            id=attempt_id,
            run_id=run_id,
            stage_id=stage_id,
            number=1,
            status=status,
            pool="default",
            worker_id="bench-worker",
            fencing_token=number,
            exit_code=None if status == "running" else 0,
            queued_at=at,
            started_at=at,
            finished_at=finished,
        )
    )
    return HistoryRun(run_id, stage_id, attempt_id, ref, sha, at)


# -- 1. ingestion --------------------------------------------------------------------------------


class StatementClock:
    """Milliseconds spent in the statements a session runs through SQLAlchemy, by first keyword
    (the worker's COPY goes through the driver, not through these events)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.spent: dict[str, float] = {}
        event.listen(engine.sync_engine, "before_cursor_execute", self._before)
        event.listen(engine.sync_engine, "after_cursor_execute", self._after)

    def _before(self, conn: Connection, *_: object) -> None:
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def _after(self, conn: Connection, _cursor: object, statement: str, *_: object) -> None:
        started = conn.info["bench_started"].pop()
        kind = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "?"
        self.spent[kind] = self.spent.get(kind, 0.0) + (time.perf_counter() - started) * 1000.0

    def reset(self) -> None:
        self.spent = {}


@dataclass(frozen=True, slots=True)
class Ingest:
    """One report parsed and stored, in milliseconds."""

    parse_ms: float  # collect_reports, in a thread
    store_ms: float  # store_reports
    commit_ms: float
    lookups_ms: float  # its SELECTs: quarantine, same-sha
    summary_ms: float  # its UPDATE of the attempt's summary

    @property
    def total_ms(self) -> float:
        return self.parse_ms + self.store_ms + self.commit_ms

    @property
    def copy_ms(self) -> float:
        """The rest of store_reports: building the records and the COPY."""
        return self.store_ms - self.lookups_ms - self.summary_ms


@dataclass
class Ingestor:
    """What one ingestion needs, as the worker has it after a test stage."""

    p: Platform
    sessions: async_sessionmaker[AsyncSession]
    seeder: Seeder
    clock: StatementClock
    workspace: Path
    report: JUnitFile
    last_attempt: uuid.UUID | None = None

    async def once(self) -> Ingest:
        (run,) = await self.seeder.runs(1, status="running", start=datetime.now(UTC), step=timedelta(0))
        at = AttemptRef(
            run.attempt_id, self.p.project_id, run.run_id, run.stage_id, STAGE, 1, run.ref, run.sha
        )
        started = time.perf_counter()
        reports = await asyncio.to_thread(collect_reports, self.workspace, junit=[JUNIT_GLOB])
        parsed = time.perf_counter()
        async with self.sessions.begin() as session:
            self.clock.reset()
            stored = await store_reports(session, at, reports, junit_asked=True)
            spent = dict(self.clock.spent)
            committing = time.perf_counter()
        done = time.perf_counter()
        _check(reports, stored.tests, self.report)
        self.last_attempt = run.attempt_id
        return Ingest(
            parse_ms=(parsed - started) * 1000.0,
            store_ms=(committing - parsed) * 1000.0,
            commit_ms=(done - committing) * 1000.0,
            lookups_ms=spent.get("SELECT", 0.0),
            summary_ms=spent.get("UPDATE", 0.0),
        )

    async def samples(self, ctx: BenchContext, count: int, label: str) -> list[Ingest]:
        ctx.progress(
            f"test_reports: ingestion {label}: 1 warm-up + {count} samples of {self.report.total:,} cases"
        )
        await self.once()
        return [await self.once() for _ in range(count)]


def _check(reports: StageReports, tests: TestCounts | None, report: JUnitFile) -> None:
    """The stored summary says what the file holds (a wrong file would measure nothing)."""
    if reports.report_errors:
        raise RuntimeError(f"the report was not read cleanly: {reports.report_errors[:3]}")
    want = (report.total, report.passed, report.failed, report.errored, report.skipped)
    got = None if tests is None else (tests.total, tests.passed, tests.failed, tests.errored, tests.skipped)
    if got != want:
        raise RuntimeError(f"stored summary {got} is not the report's {want}")


def _ingest_figures(ctx: BenchContext, found: list[Ingest], label: str, *, aims: bool) -> list[Figure]:
    pg = ctx.references.postgres
    total = summarize([i.total_ms for i in found])
    parse = summarize([i.parse_ms for i in found])
    store = summarize([i.store_ms + i.commit_ms for i in found])
    per_s = CASES / (total.p50 / 1000.0)
    p50 = Figure(f"ingest {CASES:,} cases p50 ({label})", total.p50, "ms").relative_to(pg.p50)
    rate = Figure(f"ingested cases/s at p50 ({label})", per_s, "/s").relative_to(pg.rate)
    if aims:
        p50, rate = p50.aiming(Aim.at_most(AIM_INGEST_MS)), rate.aiming(Aim.at_least(AIM_CASES_PER_S))
    median = {
        "lookups": summarize([i.lookups_ms for i in found]).p50,
        "copy": summarize([i.copy_ms for i in found]).p50,
        "summary": summarize([i.summary_ms for i in found]).p50,
        "commit": summarize([i.commit_ms for i in found]).p50,
    }
    ctx.note(
        f"ingest ({label}): {len(found)} samples after a warm-up; p50s: parse {parse.p50:.0f} ms; "
        f"store_reports {store.p50 - median['commit']:.0f} ms = quarantine + same-sha SELECTs "
        f"{median['lookups']:.0f} ms, records + COPY {median['copy']:.0f} ms, summary UPDATE "
        f"{median['summary']:.1f} ms; COMMIT {median['commit']:.1f} ms; total max {total.max:.0f} ms"
    )
    return [
        p50,
        Figure(f"ingest {CASES:,} cases p99 ({label})", total.p99, "ms").relative_to(pg.p50),
        Figure(f"  parse (collect_reports) p50 ({label})", parse.p50, "ms").relative_to(pg.p50),
        Figure(f"  store_reports + COMMIT p50 ({label})", store.p50, "ms").relative_to(pg.p50),
        rate,
    ]


async def _copy_costs(p: Platform, attempt_id: uuid.UUID, rounds: int) -> dict[str, float]:
    """Median ms of COPYing one report's rows (those stored for `attempt_id`) into `test_cases`
    itself, into a copy of it with the same indexes but no foreign key, and into one with neither
    (each in a transaction rolled back): what the foreign key and the indexes cost."""
    columns = ", ".join(HISTORY_COLUMNS)
    rows = await p.fetch(f"SELECT {columns} FROM test_cases WHERE attempt_id = $1", attempt_id)  # noqa: S608
    records = [tuple(r) for r in rows]
    tables = {
        "test_cases": "",
        "bench_tc_no_fk": "CREATE TABLE bench_tc_no_fk (LIKE test_cases INCLUDING ALL)",
        "bench_tc_no_index": "CREATE TABLE bench_tc_no_index (LIKE test_cases INCLUDING DEFAULTS INCLUDING IDENTITY)",
    }
    for ddl in tables.values():
        if ddl:
            await p.db.execute(ddl)
    spent: dict[str, list[float]] = {name: [] for name in tables}
    try:
        for _ in range(rounds):
            for name in tables:
                tx = p.db.transaction()
                await tx.start()
                try:
                    started = time.perf_counter()
                    await p.db.copy_records_to_table(name, records=records, columns=HISTORY_COLUMNS)
                    spent[name].append((time.perf_counter() - started) * 1000.0)
                finally:
                    await tx.rollback()
    finally:
        await p.db.execute("DROP TABLE IF EXISTS bench_tc_no_fk, bench_tc_no_index")
    return {name: summarize(values).p50 for name, values in spent.items()}


# -- 2. history ----------------------------------------------------------------------------------


async def _load_history(
    ctx: BenchContext, p: Platform, seeder: Seeder, tests: list[HistoryTest], budget: Budget
) -> tuple[float, float, float]:
    """The history rows, COPYed run after run; (seconds generating, seconds in COPY, seconds ANALYZE)."""
    start = datetime.now(UTC) - timedelta(hours=budget.runs * 2)
    generating = copying = 0.0
    loaded = 0
    for first in range(0, budget.runs, budget.batch_runs):
        count = min(budget.batch_runs, budget.runs - first)
        runs = await seeder.runs(
            count, status="succeeded", start=start + first * timedelta(hours=2), step=timedelta(hours=2)
        )
        t0 = time.perf_counter()
        records = [
            row
            for index, run in enumerate(runs, start=first)
            for row in history_records(tests, run, p.project_id, stage=STAGE, seed=index)
        ]
        t1 = time.perf_counter()
        await p.db.copy_records_to_table("test_cases", records=records, columns=HISTORY_COLUMNS)
        t2 = time.perf_counter()
        generating += t1 - t0
        copying += t2 - t1
        loaded += len(records)
        ctx.progress(f"test_reports: history {loaded:,} / {budget.rows:,} rows ({copying:.1f} s in COPY)")
    t0 = time.perf_counter()
    await p.db.execute("ANALYZE test_cases")
    analyze = time.perf_counter() - t0
    return generating, copying, analyze


async def _history_latencies(
    p: Platform, sessions: async_sessionmaker[AsyncSession], keys: list[str], samples: int
) -> list[float]:
    rng = random.Random(5)
    latencies: list[float] = []
    for i in range(WARMUP + samples):
        key = rng.choice(keys)
        async with sessions() as session:
            await session.execute(_BEGIN)  # the route's access check has begun the transaction
            started = time.perf_counter()
            entries = await case_history(session, p.project_id, key, limit=HISTORY_PAGE + 1)
            elapsed = (time.perf_counter() - started) * 1000.0
        if len(entries) != HISTORY_PAGE + 1:
            raise RuntimeError(f"history of {key} gave {len(entries)} entries, not {HISTORY_PAGE + 1}")
        if i >= WARMUP:
            latencies.append(elapsed)
    return latencies


async def _plan(p: Platform, dialect: Dialect, key: str) -> tuple[str, bool, float, dict[str, int]]:
    """(plan shape, whether it reads ix_test_cases_history, execution ms, shared buffers hit/read)
    of the history query for `key`."""
    statement: Select[Any] = history_statement(p.project_id, key, limit=HISTORY_PAGE + 1)
    sql = str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    raw = await p.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}")
    doc = orjson.loads(raw) if isinstance(raw, str) else raw
    top = doc[0]
    plan = top["Plan"]
    buffers = {
        "hit": int(plan.get("Shared Hit Blocks", 0)),
        "read": int(plan.get("Shared Read Blocks", 0)),
    }
    indexed = any(node.get("Index Name") == "ix_test_cases_history" for node in plan_nodes(plan))
    return plan_shape(plan), indexed, float(top.get("Execution Time", 0.0)), buffers


async def _sizes(p: Platform) -> str:
    row = await p.fetchrow(
        "SELECT pg_size_pretty(pg_table_size('test_cases')) AS heap, "
        "pg_size_pretty(pg_indexes_size('test_cases')) AS indexes, "
        "(SELECT count(*) FROM test_cases) AS rows"
    )
    assert row is not None
    return f"test_cases {row['rows']:,} rows: heap {row['heap']}, indexes {row['indexes']}"


# -- the scenario --------------------------------------------------------------------------------


async def run(ctx: BenchContext) -> list[Figure]:
    budget = Budget.of(ctx)
    report = pytest_junit(CASES)
    async with bench_platform(ctx.settings, {}, progress=ctx.progress) as p:
        workspace = p.root / "workspace"
        (workspace / "reports").mkdir(parents=True)
        (workspace / "reports" / "junit.xml").write_bytes(report.xml)
        engine = make_engine(
            CommonSettings(database_url=p.database_url, db_pool_size=2, db_max_overflow=0),
            application_name="comet-bench",
        )
        try:
            sessions = make_sessionmaker(engine)
            seeder = Seeder(p, sessions)
            ingestor = Ingestor(p, sessions, seeder, StatementClock(engine), workspace, report)
            figures = await _fresh_ingestion(ctx, ingestor, budget)
            tests = history_tests(budget.keys)
            figures += await _history(ctx, p, seeder, tests, budget)
            figures += await _history_queries(ctx, p, engine, [t.key for t in tests], budget)
            label = f"{budget.rows:,} stored"
            loaded = await ingestor.samples(ctx, budget.loaded_samples, label)
            figures += _ingest_figures(ctx, loaded, label, aims=False)
            await _copy_note(ctx, ingestor, budget.copy_rounds, label)
        finally:
            await engine.dispose()
    return figures


async def _fresh_ingestion(ctx: BenchContext, ingestor: Ingestor, budget: Budget) -> list[Figure]:
    report = ingestor.report
    await _quarantine(ingestor.p, ingestor.sessions, report)
    ctx.note(
        f"report: pytest-like JUnit XML (xunit2, one line), {len(report.xml) / 1e6:.2f} MB, {report.total:,} "
        f"cases: {report.passed:,} passed, {report.failed} failed, {report.errored} errored, {report.skipped} "
        f"skipped (failures with pytest's traceback and captured stdout/stderr); {QUARANTINED} of its keys "
        "quarantined; each sample a new run (new sha, attempt 1, as the worker's first attempt); parse = "
        "collect_reports in a thread (glob, safe open, defusedxml iterparse, keys); store = store_reports "
        "(quarantine and same-sha lookups, one COPY, the summary UPDATE) in one transaction, then COMMIT"
    )
    fresh = await ingestor.samples(ctx, budget.ingest_samples, "fresh db")
    figures = _ingest_figures(ctx, fresh, "fresh db", aims=True)
    await _copy_note(ctx, ingestor, budget.copy_rounds, "fresh db")
    return figures


async def _copy_note(ctx: BenchContext, ingestor: Ingestor, rounds: int, label: str) -> None:
    if ingestor.last_attempt is None:
        return
    costs = await _copy_costs(ingestor.p, ingestor.last_attempt, rounds)
    full, no_fk, bare = costs["test_cases"], costs["bench_tc_no_fk"], costs["bench_tc_no_index"]
    ctx.note(
        f"COPY costs ({label}; the last sample's {CASES:,} rows COPYed again, rolled back, median of {rounds}): "
        f"into test_cases {full:.0f} ms; into a copy of it with its 5 indexes but without the foreign key to "
        f"stage_attempts {no_fk:.0f} ms (so the per-row FK check ~{full - no_fk:.0f} ms); without the indexes "
        f"either {bare:.0f} ms (so the indexes ~{no_fk - bare:.0f} ms)"
    )


async def _history(
    ctx: BenchContext, p: Platform, seeder: Seeder, tests: list[HistoryTest], budget: Budget
) -> list[Figure]:
    ctx.progress(
        f"test_reports: loading {budget.rows:,} history rows ({budget.keys:,} tests x {budget.runs} runs)"
    )
    generating, copying, analyze = await _load_history(ctx, p, seeder, tests, budget)
    ctx.note(
        f"history: {budget.keys:,} tests x {budget.runs} runs (one stage, one attempt each; 1 in 5 on a "
        f"feature branch) = {budget.rows:,} rows"
        + (" (--quick: 400 tests instead of 2,000, the same depth of 500 runs)" if ctx.quick else "")
        + f", COPYed run after run ({budget.batch_runs} runs per COPY) into the table with its 5 indexes and "
        f"foreign key: {copying:.1f} s in COPY, {generating:.1f} s generating the rows in Python, ANALYZE "
        f"{analyze:.1f} s; then {await _sizes(p)}"
    )
    return [
        Figure(f"history load: {budget.rows:,} rows COPY", copying, "s"),
        Figure("history load rows/s (COPY)", budget.rows / copying, "/s").relative_to(
            ctx.references.postgres.rate
        ),
    ]


async def _history_queries(
    ctx: BenchContext, p: Platform, engine: AsyncEngine, keys: list[str], budget: Budget
) -> list[Figure]:
    ctx.progress(f"test_reports: {budget.history_samples} history queries")
    sessions = make_sessionmaker(engine)
    hist = summarize(await _history_latencies(p, sessions, keys, budget.history_samples))
    shape, indexed, executed, buffers = await _plan(p, engine.dialect, random.Random(11).choice(keys))
    ctx.note(
        f"history: {hist.count} queries of random keys after {WARMUP} warm-up ones, each "
        f"`case_history(limit={HISTORY_PAGE + 1})` as the route calls it (its ORM rows included), in a transaction "
        f"already begun as the route's access check begins it; max {hist.max:.1f} ms; one key's plan: {shape}; "
        f"executed in {executed:.2f} ms, shared buffers hit {buffers['hit']}, read {buffers['read']}"
        + ("" if indexed else "; NOTE: ix_test_cases_history is NOT used")
    )
    pg = ctx.references.postgres
    return [
        Figure(f"test history p50 ({budget.rows:,} cases)", hist.p50, "ms").relative_to(pg.p50),
        Figure(f"test history p99 ({budget.rows:,} cases)", hist.p99, "ms")
        .relative_to(pg.p50)
        .aiming(Aim.at_most(AIM_HISTORY_P99_MS)),
    ]


async def _quarantine(p: Platform, sessions: async_sessionmaker[AsyncSession], report: JUnitFile) -> None:
    keys = sorted({t.key for t in pytest_tests(report.total)})[:QUARANTINED]
    async with sessions.begin() as session:
        session.add_all(
            TestQuarantine(project_id=p.project_id, key=key, reason="bench", quarantined_by=p.user_id)
            for key in keys
        )
