"""`comet backup` / `comet restore`: a backup restores whole into an empty database with its
restore point; a non-empty target, a truncated or corrupt backup and a newer schema are refused
with one line, and nothing is half-applied."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from cli.backup import DUMP, MANIFEST, BackupError, backup, restore
from config.settings import CommonSettings
from db.engine import asyncpg_dsn
from db.schema_version import REQUIRED
from events.admin import TopicAdmin
from events.topics import Topics
from tests.integration.conftest import KAFKA, create_database, drop_database

pytestmark = pytest.mark.integration


@pytest.fixture
async def empty_database(services_up: None) -> AsyncIterator[str]:
    name = f"comet_restore_{secrets.token_hex(4)}"
    url = await create_database(name)
    yield url
    await drop_database(name)


async def _fetch(url: str, query: str) -> object:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


async def _tables(url: str) -> int:
    return int(str(await _fetch(url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")))


@pytest.fixture
async def source(own_database: str) -> CommonSettings:
    namespace = f"bk{secrets.token_hex(4)}"
    topics = Topics(namespace)
    await TopicAdmin(KAFKA, partitions=2, configs=topics.retention).ensure(topics.core())
    conn = await asyncpg.connect(asyncpg_dsn(own_database))
    try:
        await conn.execute(
            "INSERT INTO projects (id, name, repo_url, provider, default_branch) "
            "VALUES (gen_random_uuid(), 'kept', 'file:///r', 'github', 'main')"
        )
    finally:
        await conn.close()
    return CommonSettings(database_url=own_database, kafka_bootstrap_servers=KAFKA, topic_namespace=namespace)


async def test_a_backup_restores_whole_into_an_empty_database_with_its_restore_point(
    source: CommonSettings, empty_database: str, tmp_path: Path
) -> None:
    manifest = await asyncio.to_thread(backup, source, tmp_path / "b")

    assert manifest["schema_revision"] == REQUIRED
    assert set(manifest["kafka"]["end_offsets"]) == set(Topics(source.topic_namespace).core())
    assert all(len(parts) == 2 for parts in manifest["kafka"]["end_offsets"].values())
    target = CommonSettings(**{**source.model_dump(), "database_url": empty_database})
    await asyncio.to_thread(restore, target, tmp_path / "b")

    assert await _fetch(empty_database, "SELECT name FROM projects") == "kept"
    assert await _fetch(empty_database, "SELECT version_num FROM alembic_version") == REQUIRED
    point = await _fetch(empty_database, "SELECT manifest FROM restore_points")
    assert json.loads(str(point))["backup_id"] == manifest["backup_id"]


async def test_a_backup_goes_only_into_a_new_or_empty_directory(
    source: CommonSettings, tmp_path: Path
) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(BackupError, match="not an empty directory"):
        await asyncio.to_thread(backup, source, tmp_path / "used")


async def test_a_non_empty_target_is_refused_and_left_as_it_was(
    source: CommonSettings, tmp_path: Path
) -> None:
    await asyncio.to_thread(backup, source, tmp_path / "b")
    with pytest.raises(BackupError, match="is not empty"):
        await asyncio.to_thread(restore, source, tmp_path / "b")
    assert await _fetch(source.database_url, "SELECT count(*) FROM restore_points") == 0


async def test_a_truncated_dump_is_refused_before_the_target_is_touched(
    source: CommonSettings, empty_database: str, tmp_path: Path
) -> None:
    await asyncio.to_thread(backup, source, tmp_path / "b")
    dump = tmp_path / "b" / DUMP
    dump.write_bytes(dump.read_bytes()[:-100])
    target = CommonSettings(**{**source.model_dump(), "database_url": empty_database})
    with pytest.raises(BackupError, match=f"{DUMP} is truncated or corrupt"):
        await asyncio.to_thread(restore, target, tmp_path / "b")
    assert await _tables(empty_database) == 0


async def test_a_backup_from_a_newer_schema_is_refused(
    source: CommonSettings, empty_database: str, tmp_path: Path
) -> None:
    await asyncio.to_thread(backup, source, tmp_path / "b")
    path = tmp_path / "b" / MANIFEST
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "schema_revision": "0099"}))
    target = CommonSettings(**{**source.model_dump(), "database_url": empty_database})
    with pytest.raises(BackupError, match=r"newer schema \(0099\)"):
        await asyncio.to_thread(restore, target, tmp_path / "b")
    assert await _tables(empty_database) == 0


async def test_a_dump_that_fails_half_way_restores_nothing(
    source: CommonSettings, empty_database: str, tmp_path: Path
) -> None:
    """A dump corrupted in the middle (with a manifest that vouches for it): pg_restore stops at the
    first error and its single transaction leaves the target empty."""
    from events.archive import file_digest

    await asyncio.to_thread(backup, source, tmp_path / "b")
    dump = tmp_path / "b" / DUMP
    data = bytearray(dump.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = b"\xff" * 64
    dump.write_bytes(bytes(data))
    path = tmp_path / "b" / MANIFEST
    manifest = json.loads(path.read_text())
    digest, size = file_digest(dump)
    manifest["files"] = [{"name": DUMP, "bytes": size, "sha256": digest}]
    path.write_text(json.dumps(manifest))
    target = CommonSettings(**{**source.model_dump(), "database_url": empty_database})
    with pytest.raises(BackupError, match="nothing was restored"):
        await asyncio.to_thread(restore, target, tmp_path / "b")
    assert await _tables(empty_database) == 0


async def test_comet_restore_of_a_directory_without_a_manifest_says_so_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "restore", "--from", str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "COMET_LOG_LEVEL": "error"},
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == f"comet: {tmp_path} holds no manifest.json: not a complete backup"
