"""Creating runs: the run row and its `run.requested` event, in the caller's transaction."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Run
from db.projection import run_row
from events.envelope import new_envelope
from events.outbox import PendingEvent, add_events
from events.topics import Topics
from schemas.events import RunRequested
from schemas.ids import uuid7

_NEXT_NUMBER = text("UPDATE projects SET run_counter = run_counter + 1 WHERE id = :id RETURNING run_counter")


async def create_run(
    session: AsyncSession,
    topics: Topics,
    *,
    project_id: uuid.UUID,
    ref: str,
    sha: str | None,
    trigger: dict[str, Any],
    variables: dict[str, str],
    created_by: uuid.UUID | None = None,
    correlation_id: str | None = None,
) -> Run:
    """Insert a `requested` run and its `run.requested` outbox event. Durable when the caller commits."""
    number = (await session.execute(_NEXT_NUMBER, {"id": project_id})).scalar_one()
    payload = RunRequested(
        run_id=uuid7(),
        project_id=project_id,
        number=number,
        ref=ref,
        sha=sha,
        variables=variables,
        trigger=trigger,
        created_by=created_by,
    )
    envelope = new_envelope(payload, key=str(payload.run_id), correlation_id=correlation_id)
    # The row is the projection of the event (db/projection.py), as a rebuild writes it.
    run = Run(**run_row(envelope.payload, envelope.occurred_at))
    session.add(run)
    await session.flush()
    await add_events(session, [PendingEvent(topics.run_commands, envelope)])
    return run
