"""Recorded test durations, for splitting a `parallel` stage's test files by timings."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# The recent cases of a stage (all its legs, any N), averaged per test over the attempts that ran
# it: one row per (file, classname, name) collapsed to (file, classname) sums.
_RECENT = text(
    """
    WITH recent AS (
        SELECT file, classname, name, duration_s, attempt_id FROM test_cases
         WHERE project_id = :project_id AND (stage = :stage OR stage LIKE :legs) AND status <> 'skipped'
         ORDER BY id DESC LIMIT :limit
    ), per_test AS (
        SELECT file, classname, name, avg(duration_s) AS seconds FROM recent GROUP BY file, classname, name
    )
    SELECT file, classname, sum(seconds) AS seconds FROM per_test GROUP BY file, classname
    """
)


async def recorded_durations(
    session: AsyncSession, project_id: uuid.UUID, stage: str, *, limit: int = 50_000
) -> list[tuple[str | None, str, float]]:
    """`(file, classname, seconds)` over the last `limit` cases of `stage` and its legs."""
    legs = stage.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "[%"
    rows = await session.execute(
        _RECENT, {"project_id": project_id, "stage": stage, "legs": legs, "limit": limit}
    )
    return [(r.file, r.classname, float(r.seconds)) for r in rows]
