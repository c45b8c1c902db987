"""Creating runs: the run row and its `run.requested` event, in the caller's transaction."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Run
from events.envelope import new_envelope
from events.outbox import PendingEvent, add_events
from events.topics import Topics
from schemas.events import RunRequested
from schemas.ids import uuid7
from schemas.states import RunStatus

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
    run = Run(
        id=uuid7(),
        project_id=project_id,
        number=number,
        status=RunStatus.REQUESTED.value,
        ref=ref,
        sha=sha,
        trigger=trigger,
        variables=variables,
        created_by=created_by,
    )
    session.add(run)
    await session.flush()
    payload = RunRequested(
        run_id=run.id,
        project_id=project_id,
        number=number,
        ref=ref,
        sha=sha,
        variables=variables,
        trigger=trigger,
    )
    await add_events(
        session,
        [
            PendingEvent(
                topics.run_commands, new_envelope(payload, key=str(run.id), correlation_id=correlation_id)
            )
        ],
    )
    return run
