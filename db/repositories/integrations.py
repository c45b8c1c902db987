"""A project's integrations (third-party settings), one row per kind."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Integration


async def list_for(session: AsyncSession, project_id: uuid.UUID) -> list[Integration]:
    rows = await session.scalars(
        select(Integration).where(Integration.project_id == project_id).order_by(Integration.created_at)
    )
    return list(rows.all())


async def replace(
    session: AsyncSession, project_id: uuid.UUID, kind: str, config: dict[str, Any], secret_ciphertext: bytes
) -> Integration:
    """Create the project's integration of `kind`, replacing any previous one."""
    await session.execute(
        delete(Integration).where(Integration.project_id == project_id, Integration.kind == kind)
    )
    integration = Integration(
        project_id=project_id, kind=kind, config=config, secret_ciphertext=secret_ciphertext
    )
    session.add(integration)
    await session.flush()
    return integration


async def remove(session: AsyncSession, project_id: uuid.UUID, integration_id: uuid.UUID) -> bool:
    result = await session.execute(
        delete(Integration).where(Integration.project_id == project_id, Integration.id == integration_id)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
