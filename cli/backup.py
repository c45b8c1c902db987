"""`comet backup --to DIR` and `comet restore --from DIR` (docs/decisions/0020).

A backup is a directory: `database.dump` (pg_dump, custom format, one snapshot) and
`manifest.json` (written last, atomically: a directory without it is not a backup) holding the
schema revision, Comet's version, the times, each file's size and sha256, and the event log's
position — every topic partition's end offset and every consumer group's committed offset, taken
*before* the dump's snapshot. Every event committed after the snapshot was therefore published at
or after those end offsets, which is where `comet replay catch-up` reads from after a restore.

A restore checks everything before it touches the target (manifest, checksums, schema revision,
an empty target) and restores in one transaction (`pg_restore --single-transaction
--exit-on-error`): it applies all of the backup or nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from config.settings import CommonSettings
from db import schema_version
from db.engine import asyncpg_dsn
from events.archive import file_digest, fsync_directory
from events.positions import LogPosition, log_position
from events.topics import Topics
from schemas.ids import uuid7

MANIFEST = "manifest.json"
DUMP = "database.dump"
FORMAT = 1


class BackupError(Exception):
    """A backup or restore that cannot go on; the message is one line for the person."""


# -- the PostgreSQL client programs ------------------------------------------------------------
def pg_program(name: str) -> str:
    """Debian's newest `/usr/lib/postgresql/<v>/bin/<name>` (as scripts/postgres.sh finds initdb),
    else `<name>` on PATH."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in p.parent.parent.name.split(".")],
        reverse=True,
    )
    for candidate in versions:
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} is not installed (Debian's postgresql-client package has it)")
    return found


def libpq_args(database_url: str) -> tuple[list[str], dict[str, str]]:
    """Connection arguments for pg_dump/pg_restore and the environment holding the password
    (never on the command line, where `ps` shows it)."""
    url = make_url(database_url)
    args = ["--host", url.host or "127.0.0.1", "--port", str(url.port or 5432)]
    if url.username:
        args += ["--username", url.username]
    args += ["--dbname", url.database or "postgres"]
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    return args, env


def _run(argv: list[str], env: dict[str, str], what: str) -> None:
    # errors="replace": pg_restore quotes the statement that failed, bytes of a corrupted dump included.
    done = subprocess.run(argv, env=env, capture_output=True, text=True, errors="replace", check=False)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        first = next((line for line in lines if "error" in line.lower()), lines[0] if lines else "")
        raise BackupError(f"{what} failed: {first.strip()[:300]}")


def comet_version() -> str:
    try:
        return metadata.version("comet")
    except metadata.PackageNotFoundError:
        return "unknown"


def _now() -> str:
    return datetime.now(UTC).isoformat()


# -- backup -------------------------------------------------------------------------------------
async def _revision(database_url: str) -> str | None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url), timeout=10)
    try:
        exists = await conn.fetchval("SELECT to_regclass('alembic_version')")
        if exists is None:
            return None
        value = await conn.fetchval("SELECT version_num FROM alembic_version")
        return None if value is None else str(value)
    finally:
        await conn.close()


def backup(settings: CommonSettings, directory: Path) -> dict[str, Any]:
    """Write a backup of the database and the event log's position to `directory`; the manifest."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise BackupError(f"{directory} is not an empty directory; a backup goes into a new one")
    try:
        revision = asyncio.run(_revision(settings.database_url))
    except (OSError, asyncpg.PostgresError) as exc:
        raise BackupError(f"cannot reach the database: {exc}") from None
    if revision is None:
        raise BackupError("the database was never migrated (run `comet migrate`); nothing to back up")
    started = _now()
    topics = Topics(settings.topic_namespace)
    try:
        # Before the snapshot: whatever commits after it is published at or after these offsets.
        position = asyncio.run(log_position(settings.kafka_bootstrap_servers, topics))
    except Exception as exc:
        raise BackupError(f"cannot read the event log's position from Kafka: {exc!r}") from None
    directory.mkdir(parents=True, exist_ok=True)
    dump = directory / DUMP
    args, env = libpq_args(settings.database_url)
    _run([pg_program("pg_dump"), "--format=custom", "--no-owner", "--file", str(dump), *args], env, "pg_dump")
    digest, size = file_digest(dump)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "backup_id": str(uuid7()),
        "comet_version": comet_version(),
        "schema_revision": revision,
        "topic_namespace": settings.topic_namespace,
        "database": make_url(settings.database_url).database,
        "started_at": started,
        "finished_at": _now(),
        "files": [{"name": DUMP, "bytes": size, "sha256": digest}],
        "kafka": position.to_json(),
    }
    temp = directory / f".{MANIFEST}.tmp"
    with open(temp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, directory / MANIFEST)
    fsync_directory(directory)
    return manifest


# -- restore ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckedBackup:
    directory: Path
    manifest: dict[str, Any]

    @property
    def position(self) -> LogPosition:
        return LogPosition.from_json(self.manifest["kafka"])


def check_backup(directory: Path) -> CheckedBackup:
    """The backup at `directory` if it is whole and this Comet can restore it; BackupError if not."""
    path = directory / MANIFEST
    if not path.is_file():
        raise BackupError(f"{directory} holds no {MANIFEST}: not a complete backup")
    try:
        manifest = _read_manifest(path)
        files = [(str(f["name"]), int(f["bytes"]), str(f["sha256"])) for f in manifest["files"]]
        revision = str(manifest["schema_revision"])
        LogPosition.from_json(manifest["kafka"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"{path} is truncated or corrupt ({exc})") from None
    if int(manifest.get("format", 0)) > FORMAT:
        raise BackupError(
            f"the backup's format {manifest['format']} is newer than this Comet reads ({FORMAT})"
        )
    for name, want_size, want_digest in files:
        file = directory / name
        if not file.is_file():
            raise BackupError(f"the backup's {name} is missing")
        digest, size = file_digest(file)
        if size != want_size or digest != want_digest:
            raise BackupError(
                f"the backup's {name} is truncated or corrupt ({size} bytes, sha256 {digest[:12]}…; "
                f"the manifest says {want_size} bytes, {want_digest[:12]}…)"
            )
    if _newer(revision, schema_version.REQUIRED):
        raise BackupError(
            f"the backup is from a newer schema ({revision}) than this Comet knows "
            f"({schema_version.REQUIRED}); restore it with a Comet at least as new as the one that took it"
        )
    return CheckedBackup(directory, manifest)


def _read_manifest(path: Path) -> dict[str, Any]:
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(manifest, dict):
        raise TypeError("not a JSON object")
    return manifest


def _newer(revision: str, known: str) -> bool:
    if revision.isdigit() and known.isdigit():
        return int(revision) > int(known)
    return revision != known


async def _tables_in(database_url: str) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(database_url), timeout=10)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S') "
                "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                "AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'"
            )
        )
    finally:
        await conn.close()


async def _record_restore_point(database_url: str, manifest: dict[str, Any]) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url), timeout=10)
    try:
        await conn.execute(
            "INSERT INTO restore_points (id, backup_id, manifest) VALUES ($1, $2, $3::jsonb)",
            uuid7(),
            str(manifest["backup_id"]),
            json.dumps(manifest),
        )
    finally:
        await conn.close()


def restore(settings: CommonSettings, directory: Path) -> CheckedBackup:
    """Restore the backup at `directory` into the (empty) database of `settings`, migrate it to this
    Comet's schema and leave a restore point for `comet replay catch-up`."""
    checked = check_backup(directory)
    target = make_url(settings.database_url).database
    try:
        tables = asyncio.run(_tables_in(settings.database_url))
    except (OSError, asyncpg.PostgresError) as exc:
        raise BackupError(f"cannot reach the target database {target}: {exc}") from None
    if tables:
        raise BackupError(
            f"the target database {target} is not empty ({tables} tables); restore needs a fresh, empty database"
        )
    args, env = libpq_args(settings.database_url)
    _run(
        [
            pg_program("pg_restore"),
            "--single-transaction",
            "--exit-on-error",
            "--no-owner",
            "--no-privileges",
            *args,
            str(directory / DUMP),
        ],
        env,
        "pg_restore (nothing was restored)",
    )
    if schema_version.too_old(str(checked.manifest["schema_revision"])):
        from db.migrations import upgrade

        upgrade(settings.database_url)
    asyncio.run(_record_restore_point(settings.database_url, checked.manifest))
    return checked
