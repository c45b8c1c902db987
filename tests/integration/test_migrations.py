"""Every migration goes up and down on real Postgres, and the models match the migrated schema."""

from __future__ import annotations

import asyncio
import secrets

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from db.engine import asyncpg_dsn
from db.migrations import downgrade, upgrade
from db.models import Base
from tests.integration.conftest import create_database, drop_database

pytestmark = pytest.mark.integration


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r["tablename"] for r in rows}
    finally:
        await conn.close()


async def test_migrations_upgrade_downgrade_and_upgrade_again(services_up: None) -> None:
    name = f"comet_mig_{secrets.token_hex(4)}"
    url = await create_database(name)
    try:
        await asyncio.to_thread(upgrade, url)
        assert set(Base.metadata.tables) <= await _tables(url)
        await asyncio.to_thread(downgrade, url, "base")
        assert await _tables(url) <= {"alembic_version"}
        await asyncio.to_thread(upgrade, url)
        assert set(Base.metadata.tables) <= await _tables(url)
    finally:
        await drop_database(name)


async def test_models_and_migrations_do_not_drift(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
                )
            )
    finally:
        await engine.dispose()
    assert diff == []
