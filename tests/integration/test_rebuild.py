"""`comet replay rebuild` and `comet replay verify` on the real services: after a mixed workload run
by real orchestrator and worker processes (parallel stages, retries, a cancel, a run retried, a
worker killed mid-stage), the derived state rebuilt from the event history alone into an empty
database is identical to the live one, and a second rebuild changes nothing."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import func, select, text

from db.engine import asyncpg_dsn
from db.models import Deployment, Environment, Membership, Run, StageAttempt, User
from db.repositories.runs import create_run
from events.retention import archive_expired
from tests.integration.cluster import Cluster, until
from tests.integration.conftest import (
    BASE_DB_URL,
    _with_database,
    create_database,
    drop_database,
    make_repo,
)
from tests.integration.helpers import add_project, request_cancel, request_retry, start_run, wait_for_run
from tests.integration.processes import COMET, process_env
from tests.integration.test_faults import attempt_in

pytestmark = pytest.mark.integration

MIXED = """
stages:
  lint: {run: "true", checkout: false}
  unit:
    checkout: false
    parallel: 2
    reports: {junit: [report.xml]}
    run: |
      echo '<testsuite name="t"><testcase classname="c" name="a"/><testcase classname="c" name="b"><failure>x</failure></testcase></testsuite>' > report.xml
  flaky:
    checkout: false
    retry: 1
    run: '[ "$COMET_ATTEMPT" != 1 ]'
  build:
    checkout: false
    needs: [lint, unit, flaky]
    labels: {arch: amd64}
    run: "true"
"""

SLOW = """
stages:
  slow:
    pool: slow
    checkout: false
    retry: {count: 1, when: [lost_worker]}
    run: 'if [ "$COMET_ATTEMPT" = 1 ]; then sleep 30; fi'
"""

LONG = """
stages:
  first: {run: "true", checkout: false}
  long: {run: "sleep 30", checkout: false, needs: [first]}
  after: {run: "true", checkout: false, needs: [long]}
"""


# Deploys to an environment (decision 0027): its runs take turns, their deployments are rebuilt too.
DEPLOYING = """
stages:
  build: {run: "true", checkout: false}
  deploy: {run: "true", checkout: false, needs: [build], environment: production}
"""


def fixable(marker: Path) -> str:
    return f"""
stages:
  check: {{run: "test -f {marker}", checkout: false}}
  after: {{run: "true", checkout: false, needs: [check]}}
"""


@pytest.fixture
async def empty_database(template_database: str) -> AsyncIterator[str]:
    """A migrated database with nothing in it."""
    name = f"comet_rebuilt_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(asyncpg_dsn(BASE_DB_URL))
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    finally:
        await conn.close()
    try:
        yield _with_database(BASE_DB_URL, name)
    finally:
        await drop_database(name)


def comet(database_url: str, *args: str, **settings: object) -> subprocess.CompletedProcess[str]:
    env = process_env({"database_url": database_url}, log_level="warning", **settings)
    return subprocess.run([COMET, *args], env=env, capture_output=True, text=True, timeout=300, check=False)


async def _run_ids(cluster: Cluster) -> list[uuid.UUID]:
    async with cluster.sessions() as session:
        return list(await session.scalars(select(Run.id)))


async def _settled(cluster: Cluster) -> bool:
    """Every run ended and nothing is left queued or running."""
    async with cluster.sessions() as session:
        open_runs = await session.scalar(
            select(func.count())
            .select_from(Run)
            .where(Run.status.not_in(["succeeded", "failed", "cancelled"]))
        )
        open_attempts = await session.scalar(
            select(func.count())
            .select_from(StageAttempt)
            .where(StageAttempt.status.in_(["queued", "running"]))
        )
    return open_runs == 0 and open_attempts == 0


async def _start_as_member(cluster: Cluster, project_id: uuid.UUID) -> uuid.UUID:
    """A run started by a member of the project (its `created_by`), with a variable."""
    async with cluster.sessions.begin() as session:
        user = User(email=f"dev-{secrets.token_hex(4)}@example.com", password_hash=None)
        session.add(user)
        await session.flush()
        session.add(Membership(project_id=project_id, user_id=user.id, role="developer"))
        run = await create_run(
            session,
            cluster.topics,
            project_id=project_id,
            ref="refs/heads/main",
            sha=None,
            trigger={"kind": "api", "event": "manual"},
            variables={"WHO": "a member"},
            created_by=user.id,
        )
        return run.id


async def _mixed_workload(cluster: Cluster, root: Path, runs: int) -> dict[str, Any]:
    sessions, topics = cluster.sessions, cluster.topics
    mixed, _ = make_repo(root / "mixed", {".comet.yml": MIXED})
    slow, _ = make_repo(root / "slow", {".comet.yml": SLOW})
    long, _ = make_repo(root / "long", {".comet.yml": LONG})
    marker = root / "fixed"
    fix, _ = make_repo(root / "fix", {".comet.yml": fixable(marker)})
    deploying, _ = make_repo(root / "deploying", {".comet.yml": DEPLOYING})
    projects = {
        name: await add_project(sessions, str(path))
        for name, path in [
            ("mixed", mixed),
            ("slow", slow),
            ("long", long),
            ("fix", fix),
            ("deploying", deploying),
        ]
    }
    async with sessions.begin() as session:  # configuration, copied by the rebuild
        session.add(Environment(project_id=projects["deploying"], name="production", branches=["main"]))
    cluster.orchestrator()
    cluster.worker(concurrency=4, env={"labels": "arch=amd64"})  # the labelled `build` stages
    cluster.worker(concurrency=4, env={"labels": "arch=amd64,os=linux"})
    doomed = cluster.worker("slow", lease_s=3.0, concurrency=1)

    killed = await start_run(sessions, topics, projects["slow"])
    cancelled = await start_run(sessions, topics, projects["long"])
    retried = await _start_as_member(cluster, projects["fix"])
    for _ in range(runs):
        await start_run(sessions, topics, projects["mixed"])
    for _ in range(3):
        await start_run(sessions, topics, projects["deploying"])

    await until(lambda: attempt_in(sessions, killed, 1, "running"), what="the slow stage running")
    doomed.kill9()
    cluster.worker("slow", lease_s=3.0, concurrency=1)
    await until(
        lambda: attempt_in(sessions, cancelled, 1, "running"), timeout_s=120, what="a long stage running"
    )
    await request_cancel(sessions, topics, cancelled, reason="stopped by the test")
    assert (await wait_for_run(sessions, retried, timeout_s=120)).status == "failed"
    marker.write_text("fixed")
    await request_retry(sessions, topics, retried)
    await until(lambda: _settled(cluster), timeout_s=240, what="every run ended")
    return {"killed": killed, "cancelled": cancelled, "retried": retried}


@pytest.mark.timeout(420)
async def test_a_rebuild_from_the_event_history_alone_is_identical_and_a_second_changes_nothing(
    cluster: Cluster, tmp_path: Path, empty_database: str
) -> None:
    special = await _mixed_workload(cluster, tmp_path, runs=200)
    async with cluster.sessions() as session:
        statuses = {r.id: r.status for r in (await session.scalars(select(Run))).all()}
        kinds = {(a.status, a.failure_kind) for a in (await session.scalars(select(StageAttempt))).all()}
    assert len(statuses) == 206
    async with cluster.sessions() as session:
        deployed = (await session.scalars(select(Deployment.status))).all()
    assert deployed == ["succeeded"] * 3
    assert statuses[special["killed"]] == "succeeded"
    assert statuses[special["cancelled"]] == "cancelled"
    assert statuses[special["retried"]] == "succeeded"
    assert {("lost", "lost_worker"), ("failed", "script_failure"), ("cancelled", "cancelled")} <= kinds
    async with cluster.sessions() as session:
        labelled = (
            await session.scalars(select(StageAttempt.labels).where(StageAttempt.pool == "default"))
        ).all()
    assert labelled.count({"arch": "amd64"}) == 200  # one `build` per mixed run, rebuilt below too
    async with cluster.sessions() as session:
        # Each run's `run.changed` events are numbered 1..n in the order written; the row keeps n.
        numbered = (
            await session.execute(
                text(
                    "SELECT r.revision, array_agg((o.envelope->'payload'->>'revision')::int ORDER BY o.id) "
                    "FROM runs r JOIN outbox o ON o.run_id = r.id AND o.event_type = 'run.changed' "
                    "GROUP BY r.id, r.revision"
                )
            )
        ).all()
    assert len(numbered) == 206
    assert all(revisions == list(range(1, revision + 1)) for revision, revisions in numbered), numbered[:3]
    await asyncio.to_thread(cluster.stop_all)  # the history is complete and nothing writes any more
    # Retention moved the history of the runs that finished first to archive files: the rebuild
    # reads them too, merged with what is still in the outbox.
    archives = tmp_path / "archives"
    async with cluster.sessions() as session:
        finish_times = sorted(t for t in (await session.scalars(select(Run.finished_at))).all() if t)
    archived = await archive_expired(
        cluster.sessions, archives, retention_s=0, now=finish_times[len(finish_times) // 2], batch=2000
    )
    assert archived.events > 1000

    first = comet(cluster.database_url, "replay", "rebuild", "--into", empty_database, archive_dir=archives)
    assert first.returncode == 0, first.stderr
    assert "applied" in first.stdout
    assert "copied 1 users, 5 projects, 1 memberships" in first.stdout
    assert "1 environments" in first.stdout

    verified = comet(cluster.database_url, "replay", "verify", "--against", empty_database)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("identical"), verified.stdout

    second = comet(cluster.database_url, "replay", "rebuild", "--into", empty_database, archive_dir=archives)
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("rebuilt from 0 events"), second.stdout
    again = comet(cluster.database_url, "replay", "verify", "--against", empty_database)
    assert again.returncode == 0
    assert again.stdout.startswith("identical"), again.stdout

    # A difference is found and shown: table, key, column, here vs there.
    rebuilt = await asyncpg.connect(asyncpg_dsn(empty_database))
    try:
        await rebuilt.execute("UPDATE runs SET status = 'failed' WHERE id = $1", special["killed"])
    finally:
        await rebuilt.close()
    differs = comet(cluster.database_url, "replay", "verify", "--against", empty_database)
    assert differs.returncode == 1
    assert f"runs {special['killed']} status: here 'succeeded' vs there 'failed'" in differs.stdout
    assert "1 differences" in differs.stdout


@pytest.mark.timeout(120)
async def test_rebuild_and_verify_refuse_a_target_that_is_not_empty_or_not_migrated_in_one_line(
    database_url: str, empty_database: str
) -> None:
    into_itself = comet(database_url, "replay", "rebuild", "--into", database_url)
    assert into_itself.returncode == 1
    assert "names this very database" in into_itself.stderr

    bare_name = f"comet_bare_{secrets.token_hex(4)}"
    bare = await create_database(bare_name)
    try:
        unmigrated = comet(database_url, "replay", "rebuild", "--into", bare)
        assert unmigrated.returncode == 1
        assert "not migrated" in unmigrated.stderr, unmigrated.stderr
        cannot_compare = comet(database_url, "replay", "verify", "--against", bare)
        assert cannot_compare.returncode == 1
        assert "are both databases migrated?" in cannot_compare.stderr, cannot_compare.stderr
        assert cannot_compare.stderr.count("\n") == 1
    finally:
        await drop_database(bare_name)

    target = await asyncpg.connect(asyncpg_dsn(empty_database))
    try:
        await target.execute(
            "INSERT INTO projects (id, name, repo_url, provider, default_branch) "
            "VALUES ($1, 'there', 'https://example.com/x.git', 'local', 'main')",
            uuid.uuid4(),
        )
        filled = comet(database_url, "replay", "rebuild", "--into", empty_database)
        assert filled.returncode == 1
        assert "not empty (projects hold rows)" in filled.stderr, filled.stderr
        assert filled.stderr.count("\n") == 1
        assert await target.fetchval("SELECT count(*) FROM projects") == 1
        assert await target.fetchval("SELECT count(*) FROM rebuild_progress") == 0
    finally:
        await target.close()
