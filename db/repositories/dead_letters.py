"""Dead letters as operators read them: counts for metrics (the `comet dlq` tooling reads here too)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import DeadLetter


async def waiting_counts(session: AsyncSession) -> dict[tuple[str, str], int]:
    """Dead letters not redriven yet, by (consumer, kind)."""
    rows = await session.execute(
        select(DeadLetter.consumer, DeadLetter.kind, func.count())
        .where(DeadLetter.redriven_at.is_(None))
        .group_by(DeadLetter.consumer, DeadLetter.kind)
    )
    return {(row[0], row[1]): row[2] for row in rows}
