"""The schema revision the processes wait for is Alembic's head."""

from __future__ import annotations

from alembic.script import ScriptDirectory

from db.migrations import alembic_config
from db.schema_version import REQUIRED, too_old


def test_the_required_revision_is_the_newest_migration() -> None:
    script = ScriptDirectory.from_config(alembic_config("postgresql+asyncpg://unused/unused"))
    assert script.get_heads() == [REQUIRED]


def test_an_older_or_unmigrated_database_is_too_old_and_a_newer_one_is_fine() -> None:
    assert too_old(None)
    assert too_old("0001")
    assert not too_old(REQUIRED)
    assert not too_old(f"{int(REQUIRED) + 1:04d}")
