"""`comet analytics` on the real services: runs complete while it is stopped; started, it catches up
from the topics, and the insights it wrote equal a direct SQL computation over the same rows
(runs, stages, attempts); stopped with SIGTERM it drains and exits 0, and restarted it catches up
with what happened meanwhile (its changelog and committed offsets)."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import text

from db.repositories import insights
from db.repositories.insights import Insights, StageFigures, percentile, restore_times
from events.envelope import decode
from tests.integration.cluster import Cluster, until
from tests.integration.conftest import KAFKA, make_repo
from tests.integration.helpers import add_project, start_run, wait_for_run
from tests.integration.processes import CometProcess, process_env

pytestmark = pytest.mark.integration

WINDOW_S = 7 * 86400.0
FAILED_DEPLOY = "failed: stage deploy failed: exit code 1"
REPORT = (
    '<testsuite name="t"><testcase classname="c" name="a"/>'
    '<testcase classname="c" name="b"><flakyFailure message="once"/></testcase>'
    '<testcase classname="c" name="c"/></testsuite>'
)


def pipeline(marker: Path) -> str:
    return f"""
stages:
  lint: {{run: "true", checkout: false}}
  unit:
    checkout: false
    needs: [lint]
    reports: {{junit: [report.xml]}}
    run: echo '{REPORT}' > report.xml
  deploy:
    checkout: false
    needs: [unit]
    environment: production
    run: test -f {marker}
"""


def analytics(cluster: Cluster, n: int) -> CometProcess:
    env = process_env(
        cluster.common, analytics_flush_interval="0.2", analytics_data_dir=str(cluster.root / "analytics")
    )
    return CometProcess(["analytics"], env, cluster.root / f"analytics-{n}.log").start()


async def from_rows(cluster: Cluster, project_id: uuid.UUID) -> Insights:
    """The insights computed straight from `runs`, `stages` and `stage_attempts`."""
    p: dict[str, Any] = {"p": project_id, "w": WINDOW_S}
    async with cluster.sessions() as s:
        runs, ok, failed = (
            await s.execute(
                text(
                    "SELECT count(*), count(*) FILTER (WHERE status = 'succeeded'), "
                    "count(*) FILTER (WHERE status = 'failed') FROM runs WHERE project_id = :p "
                    "AND status IN ('succeeded', 'failed', 'cancelled') AND finished_at >= now() - make_interval(secs => :w)"
                ),
                p,
            )
        ).one()
        stages = [
            StageFigures(*row)
            for row in (
                await s.execute(
                    text(
                        "SELECT s.name, "
                        "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM s.finished_at - s.started_at)), "
                        "percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM s.finished_at - s.started_at)), "
                        "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM s.started_at - s.queued_at)), "
                        "percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM s.started_at - s.queued_at)) "
                        "FROM stages s JOIN runs r ON r.id = s.run_id WHERE r.project_id = :p "
                        "AND s.status IN ('succeeded', 'failed') AND s.started_at IS NOT NULL "
                        "AND s.finished_at >= now() - make_interval(secs => :w) GROUP BY s.name ORDER BY s.name"
                    ),
                    p,
                )
            ).all()
        ]
        deployments = (
            await s.execute(
                text(
                    "SELECT d.environment, d.finished_at, d.status, "
                    "extract(epoch FROM d.finished_at - r.created_at) "
                    "FROM deployments d JOIN runs r ON r.id = d.run_id WHERE d.project_id = :p "
                    "AND d.status IN ('succeeded', 'failed') "
                    "AND d.finished_at >= now() - make_interval(secs => :w) ORDER BY d.finished_at, d.id"
                ),
                p,
            )
        ).all()
        total, flaky = (
            await s.execute(
                text(
                    "SELECT coalesce(sum((a.test_summary->>'total')::int), 0), "
                    "coalesce(sum((a.test_summary->>'flaky')::int), 0) "
                    "FROM stage_attempts a JOIN runs r ON r.id = a.run_id WHERE r.project_id = :p "
                    "AND a.test_summary IS NOT NULL AND a.finished_at >= now() - make_interval(secs => :w)"
                ),
                p,
            )
        ).one()
    leads = [float(lead) for _, _, status, lead in deployments if status == "succeeded"]
    return Insights(
        window_s=WINDOW_S,
        deployments=sum(1 for d in deployments if d[2] == "succeeded"),
        failed_deployments=sum(1 for d in deployments if d[2] == "failed"),
        lead_time_p50_s=percentile(leads, 0.5),
        time_to_restore_p50_s=percentile(restore_times((e, at, st) for e, at, st, _ in deployments), 0.5),
        runs=runs,
        succeeded_runs=ok,
        failed_runs=failed,
        stages=stages,
        tests_total=int(total),
        tests_flaky=int(flaky),
    )


def rounded(value: Any) -> Any:
    """Seconds to the microsecond (the rows' precision; float sums may differ in the last bits)."""
    if isinstance(value, float):
        return round(value, 6)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: rounded(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


LAST: dict[str, Any] = {}


async def stage_differences(cluster: Cluster, project_id: uuid.UUID) -> list[Any]:
    """Each timed stage whose row and fact disagree: (stage id, name, row's times, fact's)."""
    async with cluster.sessions() as s:
        return list(
            (
                await s.execute(
                    text(
                        "SELECT s.id, s.name, s.status, s.queued_at, s.started_at, s.finished_at, "
                        "f.status, f.at, f.value_s, f.wait_s "
                        "FROM stages s JOIN runs r ON r.id = s.run_id "
                        "LEFT JOIN insight_facts f ON f.kind = 'stage' AND f.member_id = s.id "
                        "WHERE r.project_id = :p AND s.status IN ('succeeded', 'failed') "
                        "AND (f.member_id IS NULL OR f.at <> s.finished_at "
                        "OR f.value_s <> extract(epoch FROM s.finished_at - s.started_at) "
                        "OR f.wait_s <> extract(epoch FROM s.started_at - s.queued_at))"
                    ),
                    {"p": project_id},
                )
            ).all()
        )


async def caught_up(cluster: Cluster, project_id: uuid.UUID, runs: int) -> dict[str, Any] | None:
    async with cluster.sessions() as session:
        written = rounded(await insights.window(session, project_id, WINDOW_S))
    expected = rounded(await from_rows(cluster, project_id))
    LAST.update(written=written, expected=expected)
    return written if written == expected and written["runs"] == runs else None


async def run_all(cluster: Cluster, project_id: uuid.UUID, count: int) -> list[str]:
    ids = [await start_run(cluster.sessions, cluster.topics, project_id) for _ in range(count)]
    runs = [await wait_for_run(cluster.sessions, i, timeout_s=120) for i in ids]
    return [r.status if r.status == "succeeded" else f"{r.status}: {r.failure_reason}" for r in runs]


@pytest.mark.timeout(360)
async def test_insights_equal_sql_over_the_rows_and_catch_up_after_analytics_was_stopped(
    cluster: Cluster, tmp_path: Path
) -> None:
    marker = tmp_path / "deployable"
    repo, _ = make_repo(tmp_path / "repo", {".comet.yml": pipeline(marker)})
    project_id = await add_project(cluster.sessions, str(repo))
    cluster.orchestrator()
    cluster.worker(concurrency=4)

    # Analytics is not running: every run still runs to its end.
    assert await run_all(cluster, project_id, 2) == [FAILED_DEPLOY, FAILED_DEPLOY]
    marker.write_text("ok")
    assert await run_all(cluster, project_id, 2) == ["succeeded", "succeeded"]

    first = analytics(cluster, 1)
    try:
        figures = await until(
            lambda: caught_up(cluster, project_id, 4), timeout_s=90, what="analytics caught up"
        )
    except (AssertionError, TimeoutError):
        first.stop()  # not left running for the tests after this one
        differing = await stage_differences(cluster, project_id)
        raise AssertionError(f"{LAST}\n{differing}\n{first.output()[-3000:]}") from None
    assert (figures["deployments"], figures["failed_deployments"]) == (2, 2)
    assert (figures["succeeded_runs"], figures["failed_runs"]) == (2, 2)
    assert [s["stage"] for s in figures["stages"]] == ["deploy", "lint", "unit"]
    assert (figures["tests_total"], figures["tests_flaky"]) == (12, 4)
    assert figures["time_to_restore_p50_s"] is not None
    assert figures["time_to_restore_p50_s"] > 0

    # Stopped (a drain: exit 0), then more runs, then started again: it catches up.
    first.signal(signal.SIGTERM)
    assert await asyncio.to_thread(first.proc.wait, 30) == 0, first.output()[-3000:]  # type: ignore[union-attr]
    assert await run_all(cluster, project_id, 2) == ["succeeded", "succeeded"]
    second = analytics(cluster, 2)
    try:
        figures = await until(lambda: caught_up(cluster, project_id, 6), timeout_s=90, what="caught up again")
    except (AssertionError, TimeoutError):
        second.stop()
        differing = await stage_differences(cluster, project_id)
        raise AssertionError(f"{LAST}\n{differing}\n{second.output()[-3000:]}") from None
    assert figures["deployments"] == 4
    second.stop()


# What analytics is made to miss: the run's first change (its later changes then wait for it), or
# the result of `unit`'s attempt, which carries its test counts (nothing waits: the run ends in the
# table with that attempt running).
MISSED: dict[str, Callable[[Mapping[str, Any]], bool]] = {
    "first change": lambda p: p.get("revision") == 1,
    "unit's result": lambda p: "attempt_id" in p and "exit_code" in p and p.get("stage") == "unit",
}


async def _skip_past(cluster: Cluster, run_id: uuid.UUID, missed: str) -> None:
    """Commit analytics' offsets so that it starts after the run's event named by `missed` (every
    copy of it), as if faust had dropped it, and at the start elsewhere."""
    topics = cluster.topics
    partitions = [TopicPartition(t, p) for t in topics.analytics_inputs() for p in range(3)]
    reader = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False)
    await reader.start()
    try:
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        ends = await reader.end_offsets(partitions)
        skip: dict[TopicPartition, int] = {}
        async with asyncio.timeout(30):
            while [tp for tp in partitions if await reader.position(tp) < ends[tp]]:
                for tp, records in (await reader.getmany(timeout_ms=500)).items():
                    for record in records:
                        p = decode(record.value).payload
                        if MISSED[missed](p) and p.get("run_id") == str(run_id):
                            skip[tp] = record.offset + 1
    finally:
        await reader.stop()
    assert len(skip) == 1, skip
    committer = AIOKafkaConsumer(
        bootstrap_servers=KAFKA, group_id=topics.analytics_group, enable_auto_commit=False
    )
    await committer.start()
    try:
        committer.assign(partitions)
        await committer.commit({tp: skip.get(tp, 0) for tp in partitions})
    finally:
        await committer.stop()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("missed", sorted(MISSED))
async def test_a_run_whose_event_analytics_missed_is_folded_again_from_its_history(
    cluster: Cluster, tmp_path: Path, missed: str
) -> None:
    """faust can drop a message around a rebalance (decision 0030): the run's later events wait for
    it, and analytics folds the run again from the outbox, so its facts still equal the rows."""
    marker = tmp_path / "deployable"
    marker.write_text("ok")
    repo, _ = make_repo(tmp_path / "repo", {".comet.yml": pipeline(marker)})
    project_id = await add_project(cluster.sessions, str(repo))
    cluster.orchestrator()
    cluster.worker(concurrency=4)
    run_id = await start_run(cluster.sessions, cluster.topics, project_id)
    assert (await wait_for_run(cluster.sessions, run_id, timeout_s=120)).status == "succeeded"
    await _skip_past(cluster, run_id, missed)

    env = process_env(
        cluster.common,
        analytics_flush_interval="0.2",
        analytics_repair_after="1",
        analytics_data_dir=str(cluster.root / "analytics"),
    )
    process = CometProcess(["analytics"], env, cluster.root / "analytics-repair.log").start()
    try:
        figures = await until(lambda: caught_up(cluster, project_id, 1), timeout_s=90, what="repaired")
    except (AssertionError, TimeoutError):
        process.stop()
        raise AssertionError(f"{LAST}\n{process.output()[-3000:]}") from None
    process.stop()
    assert [s["stage"] for s in figures["stages"]] == ["deploy", "lint", "unit"]
    assert figures["deployments"] == 1
    assert "folded a run again from its history" in process.output()
