"""Pipeline schedules follow the `on.schedule` entries of the default branch's `.comet.yml`, on a real
git repository and PostgreSQL: added, kept (same row, same next tick) when only their order or
the pipeline's name changes, removed; a broken definition keeps the last good schedules; a planned
run of the branch's tip brings them in step, an older commit's does not; a created project and a
changed default branch are picked up by the scan."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.settings import OrchestratorSettings
from db.engine import make_engine, make_sessionmaker
from db.models import Schedule
from orchestrator.pipeline_schedules import PipelineScheduleSync
from tests.integration.conftest import git, make_repo
from tests.integration.helpers import add_project
from workers.git import MirrorCache

pytestmark = pytest.mark.integration

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
BERLIN = "0 3 * * * Europe/Berlin refs/heads/main"
RELEASE = "*/30 * * * * UTC refs/heads/release"
WEEKDAYS = "0 12 * * 1-5 UTC refs/heads/main"

V1 = """
name: ci
on:
  push: {}
  schedule:
    - {cron: "0 3 * * *", timezone: Europe/Berlin}
    - {cron: "*/30 * * * *", ref: release}
stages:
  a: {run: "true"}
"""
# Renamed, reordered, one entry removed and one added.
V2 = """
name: renamed
on:
  schedule:
    - {cron: "0 12 * * 1-5"}
    - {cron: "0 3 * * *", timezone: Europe/Berlin, ref: main}
stages:
  a: {run: "true"}
"""
BROKEN = """
on:
  schedule: [{cron: "61 * * * *"}]
stages:
  a: {run: "true"}
"""
V3 = """
on:
  schedule: [{cron: "@hourly"}]
stages:
  a: {run: "true"}
"""


@pytest.fixture
async def sessions(own_database: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(OrchestratorSettings(database_url=own_database))
    yield make_sessionmaker(engine)
    await engine.dispose()


async def _rows(sessions: async_sessionmaker[AsyncSession], project_id: uuid.UUID) -> dict[str, Schedule]:
    async with sessions() as session:
        rows = await session.scalars(
            select(Schedule).where(Schedule.project_id == project_id, Schedule.source == "pipeline")
        )
        return {row.name: row for row in rows}


def _commit(repo: Path, definition: str, message: str) -> str:
    (repo / ".comet.yml").write_text(definition)
    git(repo, "commit", "-q", "-am", message)
    return git(repo, "rev-parse", "HEAD")


async def test_pipeline_schedules_follow_the_default_branchs_definition(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    repo, first = make_repo(tmp_path / "repo", {".comet.yml": V1})
    project = await add_project(sessions, str(repo))
    mirror = MirrorCache(tmp_path / "git")
    sync = PipelineScheduleSync(sessions, mirror, clock=lambda: NOW)

    assert await sync.sync_project(project, str(repo), "main")
    rows = await _rows(sessions, project)
    assert set(rows) == {BERLIN, RELEASE}
    assert (rows[BERLIN].cron, rows[BERLIN].timezone, rows[BERLIN].ref) == (
        "0 3 * * *",
        "Europe/Berlin",
        "refs/heads/main",
    )
    assert rows[BERLIN].next_fire_at == datetime(2026, 6, 2, 1, 0, tzinfo=UTC)
    assert rows[RELEASE].ref == "refs/heads/release"
    assert rows[RELEASE].next_fire_at == datetime(2026, 6, 1, 12, 30, tzinfo=UTC)
    # The Berlin schedule has fired once; it must keep that through the changes below.
    async with sessions.begin() as session:
        await session.execute(
            text("UPDATE schedules SET last_tick_at = :t WHERE id = :id"),
            {"t": datetime(2026, 6, 1, 1, 0, tzinfo=UTC), "id": rows[BERLIN].id},
        )

    _commit(repo, V2, "reorder, rename, drop one, add one")
    later = PipelineScheduleSync(sessions, mirror, clock=lambda: datetime(2026, 6, 1, 13, 0, tzinfo=UTC))
    assert await later.sync_project(project, str(repo), "main")
    after = await _rows(sessions, project)
    assert set(after) == {BERLIN, WEEKDAYS}
    assert after[BERLIN].id == rows[BERLIN].id
    assert after[BERLIN].next_fire_at == rows[BERLIN].next_fire_at
    assert after[BERLIN].last_tick_at == datetime(2026, 6, 1, 1, 0, tzinfo=UTC)
    assert after[WEEKDAYS].next_fire_at == datetime(2026, 6, 2, 12, 0, tzinfo=UTC)  # 2026-06-01 is a Monday

    _commit(repo, BROKEN, "break the definition")
    assert await later.sync_project(project, str(repo), "main")
    assert {name: row.id for name, row in (await _rows(sessions, project)).items()} == {
        name: row.id for name, row in after.items()
    }, "a broken definition keeps the last good schedules"

    # A run of an older commit of the branch is planned: its schedules are not the branch's.
    await later.default_branch_planned(project, str(repo), "refs/heads/main", first)
    assert set(await _rows(sessions, project)) == {BERLIN, WEEKDAYS}

    # The tip is fixed and a run of it is planned (planning fetched the mirror): they follow it.
    tip = _commit(repo, V3, "fix it")
    assert await mirror.resolve(str(repo), "refs/heads/main") == tip
    await later.default_branch_planned(project, str(repo), "refs/heads/main", tip)
    assert set(await _rows(sessions, project)) == {"0 * * * * UTC refs/heads/main"}

    # The engine hands planned runs over with follow_planned: it returns at once (the git lookup
    # is not on the run's way to its first stage) and the follows are made in order, behind it.
    newer = _commit(repo, V2, "back to two schedules")
    await mirror.resolve(str(repo), "refs/heads/main")  # the mirror knows the new tip
    await later.follow_planned(project, str(repo), "refs/heads/main", first)
    await later.follow_planned(project, str(repo), "refs/heads/main", newer)
    assert set(await _rows(sessions, project)) == {"0 * * * * UTC refs/heads/main"}, "not yet"
    async with asyncio.timeout(30):
        while set(await _rows(sessions, project)) != {BERLIN, WEEKDAYS}:
            await asyncio.sleep(0.05)
    later.stop()


async def test_a_created_project_and_a_changed_default_branch_are_picked_up_by_the_scan(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    repo, _ = make_repo(tmp_path / "repo", {".comet.yml": V1})
    git(repo, "checkout", "-q", "-b", "dev")
    _commit(repo, V3, "dev schedules")
    sync = PipelineScheduleSync(sessions, MirrorCache(tmp_path / "git"), clock=lambda: NOW)
    await sync.scan_changes()  # whatever is there already

    project = await add_project(sessions, str(repo))
    assert await sync.scan_changes() == 1
    assert set(await _rows(sessions, project)) == {BERLIN, RELEASE}
    assert await sync.scan_changes() == 0, "a project synced since its last change is not read again"

    async with sessions.begin() as session:
        await session.execute(
            text("UPDATE projects SET default_branch = 'dev', updated_at = now() WHERE id = :id"),
            {"id": project},
        )
    assert await sync.scan_changes() == 1
    assert set(await _rows(sessions, project)) == {"0 * * * * UTC refs/heads/dev"}


async def test_a_default_branch_without_a_definition_has_no_pipeline_schedules(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    repo, _ = make_repo(tmp_path / "repo", {".comet.yml": V1})
    project = await add_project(sessions, str(repo))
    sync = PipelineScheduleSync(sessions, MirrorCache(tmp_path / "git"), clock=lambda: NOW)
    assert await sync.sync_project(project, str(repo), "main")
    assert len(await _rows(sessions, project)) == 2

    git(repo, "rm", "-q", ".comet.yml")
    git(repo, "commit", "-q", "-m", "no more pipeline")
    assert await sync.sync_project(project, str(repo), "main")
    assert await _rows(sessions, project) == {}

    assert not await sync.sync_project(project, str(tmp_path / "missing"), "main"), "unreadable: rows kept"
