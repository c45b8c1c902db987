"""The schema revision this code needs, and how to read the database's, without importing Alembic
(processes check it at start: a database older than the code is waited for, not crashed into).

`REQUIRED` is the newest migration's revision; a unit test keeps it equal to Alembic's head.
A database *newer* than the code is fine: migrations are additive, so during a rolling upgrade
processes of the previous release keep running on the migrated schema.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

REQUIRED = "0013"


async def database_revision(connection: AsyncConnection) -> str | None:
    """The database's Alembic revision; None when it was never migrated."""
    exists = (await connection.execute(text("SELECT to_regclass('alembic_version')"))).scalar_one()
    if exists is None:
        return None
    return (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar_one_or_none()


def too_old(revision: str | None) -> bool:
    """Whether a database at `revision` lacks migrations this code needs."""
    if revision is None:
        return True
    if revision.isdigit() and REQUIRED.isdigit():
        return int(revision) < int(REQUIRED)
    return revision != REQUIRED
