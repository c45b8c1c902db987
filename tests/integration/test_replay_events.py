"""`comet replay events` on the real services: replaying the whole history of a busy system (many
runs with parallel stages, retries, test reports, failures and cancels) to every topic, once the
consumers have caught up, changes nothing — the inboxes absorb every event. And the command's bad
input: an unknown topic, an empty window, a dry run."""

from __future__ import annotations

import asyncio
import functools
import re
import subprocess
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from events.topics import Topics
from tests.integration.cluster import Cluster, until
from tests.integration.conftest import KAFKA, TEST_SECRET_KEY, make_repo
from tests.integration.helpers import add_project, request_cancel, start_run, wait_for_run
from tests.integration.processes import COMET, process_env

pytestmark = pytest.mark.integration

BUSY = """
stages:
  build: {checkout: false, run: 'true'}
  unit: {checkout: false, needs: [build], run: '[ "$FAIL" != 1 ]'}
  lint: {checkout: false, needs: [build], run: 'true'}
  flaky:
    checkout: false
    needs: [build]
    retry: 1
    run: '[ "$COMET_ATTEMPT" -gt 1 ]'
  report:
    checkout: false
    needs: [unit, lint, flaky]
    run: |
      mkdir -p r
      printf '<testsuite name="s"><testcase classname="c" name="a"/><testcase classname="c" name="b"/></testsuite>' > r/junit.xml
    reports: {junit: r/junit.xml}
"""
SLOW = """
stages:
  quick: {checkout: false, run: 'true'}
  slow: {checkout: false, needs: [quick], run: 'sleep 60'}
  after: {checkout: false, needs: [slow], run: 'true'}
"""
# What the replay must leave exactly as it was: derived state, test data, and the bookkeeping
# that would grow if anything were applied again (outbox, inbox, dead letters).
TABLES = (
    "runs",
    "stages",
    "stage_attempts",
    "test_cases",
    "coverage_reports",
    "deployments",
    "commit_statuses",
)
COUNTED = ("outbox", "inbox", "dead_letters", "log_chunks")


async def _snapshot(sessions: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    snap: dict[str, Any] = {}
    async with sessions() as session:
        existing = set((await session.execute(text("SELECT tablename FROM pg_tables"))).scalars())
        for table in TABLES:
            if table in existing:
                rows = await session.execute(text(f"SELECT t::text FROM {table} t"))  # noqa: S608
                snap[table] = sorted(rows.scalars())
        for table in COUNTED:
            snap[f"{table} rows"] = await session.scalar(text(f"SELECT count(*) FROM {table}"))  # noqa: S608
    return snap


async def _partitions(admin: AIOKafkaAdminClient, names: Iterable[str]) -> list[TopicPartition]:
    described = await admin.describe_topics(list(names))
    return [TopicPartition(d["topic"], p["partition"]) for d in described for p in d.get("partitions") or []]


async def _groups_lag(groups: dict[str, list[str]]) -> int:
    """Messages the consumer groups have not committed yet, over their topics."""
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    probe = AIOKafkaConsumer(bootstrap_servers=KAFKA)
    await admin.start()
    await probe.start()
    try:
        total = 0
        for group, names in groups.items():
            tps = await _partitions(admin, names)
            assert tps, f"no partitions of {names}"
            ends = await probe.end_offsets(tps)
            committed = await admin.list_consumer_group_offsets(group, partitions=tps)
            for tp in tps:
                done = committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0
                total += max(ends[tp] - done, 0)
        return total
    finally:
        await probe.stop()
        await admin.close()


async def _end_offsets(names: Iterable[str]) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    probe = AIOKafkaConsumer(bootstrap_servers=KAFKA)
    await admin.start()
    await probe.start()
    try:
        tps = await _partitions(admin, names)
        assert tps, "no partitions"
        return sum((await probe.end_offsets(tps)).values())
    finally:
        await probe.stop()
        await admin.close()


def _comet(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COMET, *args], env=env, capture_output=True, text=True, timeout=180, check=False)


async def _caught_up(topics: Topics) -> None:
    groups = {
        topics.orchestrator_group: topics.orchestrator_inputs(),
        topics.worker_group("default"): [topics.dispatch("default")],
        topics.status_reporter_group: [topics.run_status],
    }
    quiet = 0

    async def settled() -> bool:
        nonlocal quiet
        quiet = quiet + 1 if await _groups_lag(groups) == 0 else 0
        return quiet >= 3  # caught up, three looks in a row

    await until(settled, timeout_s=120, what="consumers caught up")


@pytest.mark.timeout(420)
async def test_replaying_the_whole_history_of_a_busy_system_to_every_topic_changes_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    sessions, topics = cluster.sessions, cluster.topics
    since = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    busy_repo, _ = make_repo(tmp_path / "busy", {".comet.yml": BUSY})
    slow_repo, _ = make_repo(tmp_path / "slow", {".comet.yml": SLOW})
    busy = await add_project(sessions, str(busy_repo))
    slow = await add_project(sessions, str(slow_repo))
    cluster.orchestrator(env={"secret_key": TEST_SECRET_KEY})
    cluster.worker(concurrency=4)
    cluster.worker(concurrency=4)

    cancelled = [await start_run(sessions, topics, slow) for _ in range(2)]
    runs = [
        await start_run(sessions, topics, busy, variables={"FAIL": "1"} if n % 8 == 0 else {})
        for n in range(24)
    ]
    for run_id in cancelled:
        await until(
            functools.partial(_stage_running, sessions, run_id, "slow"),
            timeout_s=180,
            what="slow stage running",
        )
        await request_cancel(sessions, topics, run_id)
    finished = [await wait_for_run(sessions, r, timeout_s=240) for r in [*runs, *cancelled]]
    statuses = [r.status for r in finished]
    assert statuses.count("failed") == 3, cluster.logs()
    assert statuses.count("cancelled") == 2
    assert statuses.count("succeeded") == 21
    await _caught_up(topics)
    before = await _snapshot(sessions)
    assert len(before["test_cases"]) == 2 * 21
    attempts_before = len(before["stage_attempts"])
    assert attempts_before > 5 * 24  # every flaky stage ran twice

    env = process_env(cluster.common)
    names = [*topics.logical_names()[:-1], "dispatch.default"]
    real = [topics.by_logical_name(n) for n in names]
    offsets_before = await _end_offsets(t for t in real if t)
    published = 0
    for name in names:
        done = _comet(env, "replay", "events", "--topic", name, "--since", since)
        if name in ("webhooks", "dead-letters"):  # nothing of these happened in this system
            assert done.returncode == 1
            assert done.stderr.strip().startswith("comet: no events of"), done.stderr
            continue
        assert done.returncode == 0, done.stderr
        match = re.search(r"scanned (\d+) events of .*; published (\d+)", done.stdout)
        assert match, done.stdout
        published += int(match.group(2))
    assert published > 24 * 10
    assert await _end_offsets(t for t in real if t) - offsets_before == published

    await _caught_up(topics)
    after = await _snapshot(sessions)
    for table in before:
        assert after[table] == before[table], f"{table} changed by the replay"


async def _stage_running(sessions: async_sessionmaker[AsyncSession], run_id: uuid.UUID, stage: str) -> bool:
    async with sessions() as session:
        status = await session.scalar(
            text("SELECT status FROM stages WHERE run_id = :r AND name = :s"), {"r": run_id, "s": stage}
        )
    return bool(status == "running")


async def test_an_unknown_topic_is_one_line_naming_the_valid_ones(common_env: dict[str, Any]) -> None:
    done = await asyncio.to_thread(
        _comet, process_env(common_env), "replay", "events", "--topic", "runs", "--since", "1h"
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "comet: unknown topic 'runs': use one of webhooks, run-commands, stage-results, run-status, "
        "dead-letters, dispatch.POOL"
    ]


async def test_an_empty_window_says_so_in_one_line_and_publishes_nothing(common_env: dict[str, Any]) -> None:
    done = await asyncio.to_thread(
        _comet,
        process_env(common_env),
        *("replay", "events", "--topic", "run-commands", "--since", "2020-01-01", "--until", "2020-01-02"),
    )
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1
    assert "no events of" in done.stderr
    assert "nothing to replay" in done.stderr


async def test_a_dry_run_counts_the_window_per_event_type(
    common_env: dict[str, Any], sessions: async_sessionmaker[AsyncSession], namespace: str, tmp_path: Path
) -> None:
    topics = Topics(namespace)
    repo, _ = make_repo(tmp_path / "repo", {".comet.yml": "stages:\n  a: {run: 'true'}\n"})
    project = await add_project(sessions, str(repo))
    since = datetime.now(UTC).isoformat()
    for _ in range(3):
        run_id = await start_run(sessions, topics, project)
    await request_cancel(sessions, topics, run_id)
    done = await asyncio.to_thread(
        _comet,
        process_env(common_env),
        "replay",
        "events",
        "--topic",
        "run-commands",
        "--since",
        since,
        "--dry-run",
    )
    assert done.returncode == 0, done.stderr
    assert re.search(
        r"^dry run: scanned 4 events of \S+\.run-commands from .* to now; would publish 4 "
        r"\(run\.cancel_requested 1, run\.requested 3\)$",
        done.stdout.strip(),
    ), done.stdout
