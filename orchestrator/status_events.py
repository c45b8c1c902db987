"""The status-change events a decision implies, found by comparing the state before and after."""

from __future__ import annotations

from datetime import datetime

from orchestrator.model import RunState
from schemas.events import EventPayload, RunStatusChanged, StageStatusChanged


def status_changes(before: RunState, after: RunState, now: datetime) -> list[EventPayload]:
    events: list[EventPayload] = []
    for name, stage in after.stages.items():
        old = before.stages.get(name)
        if old is not None and old.status == stage.status and old.attempt == stage.attempt:
            continue
        events.append(
            StageStatusChanged(
                run_id=after.id,
                stage=name,
                status=stage.status.value,
                previous=old.status.value if old else None,
                attempt=stage.attempt,
                exit_code=stage.exit_code,
                failure_reason=stage.failure_reason,
                at=now,
            )
        )
    if before.status != after.status:
        events.append(
            RunStatusChanged(
                run_id=after.id,
                project_id=after.project_id,
                status=after.status.value,
                previous=before.status.value,
                failure_reason=after.failure_reason,
                at=now,
            )
        )
    return events
