"""The inbox: which events a consumer has already applied. Recording an event id happens in the
same transaction as its effect, so a redelivered event is recognised and changes nothing."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_CLAIM = text(
    "INSERT INTO inbox (consumer, event_id) SELECT :consumer, unnest(CAST(:ids AS uuid[])) "
    "ON CONFLICT DO NOTHING RETURNING event_id"
)


async def claim_new(session: AsyncSession, consumer: str, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Record `event_ids` for `consumer`; returns those not seen before (the ones to apply)."""
    if not event_ids:
        return set()
    rows = await session.execute(_CLAIM, {"consumer": consumer, "ids": list(event_ids)})
    return {row.event_id for row in rows}
