"""Loading runs as `RunState` for `decide()` (locked for the transaction) and writing back what
changed: the orchestrator shell's only door to the runs, stages and attempts tables."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Run, Stage, StageAttempt
from orchestrator.model import RunState, StageState
from schemas.ids import uuid7
from schemas.states import AttemptStatus, RunStatus, StageStatus

_RUN_FIELDS = (
    "status",
    "sha",
    "failure_reason",
    "pipeline_name",
    "concurrency_group",
    "retries",
    "cancel_requested_at",
    "waiting_for_group",
    "variables",
    "queued_at",
    "started_at",
    "finished_at",
)
_STAGE_FIELDS = (
    "status",
    "attempt",
    "exit_code",
    "failure_kind",
    "failure_reason",
    "note",
    "queued_at",
    "started_at",
    "finished_at",
)


@dataclass(frozen=True, slots=True)
class LoadedRun:
    state: RunState
    stage_ids: dict[str, uuid.UUID]


def _stage_state(row: Stage) -> StageState:
    return StageState(
        name=row.name,
        status=StageStatus(row.status),
        needs=tuple(row.needs),
        pool=row.pool,
        spec=row.spec,
        attempt=row.attempt,
        position=row.position,
        exit_code=row.exit_code,
        failure_kind=row.failure_kind,
        failure_reason=row.failure_reason,
        note=row.note,
        queued_at=row.queued_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        base_name=row.base_name,
        matrix=row.matrix,
    )


async def load_for_update(session: AsyncSession, run_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, LoadedRun]:
    """Lock the runs (in id order, so concurrent orchestrators cannot deadlock) and load their stages."""
    ids = sorted(set(run_ids))
    if not ids:
        return {}
    runs = (
        await session.scalars(select(Run).where(Run.id.in_(ids)).order_by(Run.id).with_for_update())
    ).all()
    stages = (
        await session.scalars(
            select(Stage).where(Stage.run_id.in_(ids)).order_by(Stage.run_id, Stage.position)
        )
    ).all()
    by_run: dict[uuid.UUID, list[Stage]] = {}
    for stage in stages:
        by_run.setdefault(stage.run_id, []).append(stage)
    loaded: dict[uuid.UUID, LoadedRun] = {}
    for run in runs:
        rows = by_run.get(run.id, [])
        state = RunState(
            id=run.id,
            project_id=run.project_id,
            status=RunStatus(run.status),
            ref=run.ref,
            sha=run.sha,
            variables=run.variables,
            trigger=run.trigger,
            stages={s.name: _stage_state(s) for s in rows},
            failure_reason=run.failure_reason,
            pipeline_name=run.pipeline_name,
            concurrency_group=run.concurrency_group,
            retries=run.retries,
            cancel_requested_at=run.cancel_requested_at,
            waiting_for_group=run.waiting_for_group,
            queued_at=run.queued_at,
            started_at=run.started_at,
            finished_at=run.finished_at,
        )
        loaded[run.id] = LoadedRun(state, {s.name: s.id for s in rows})
    return loaded


@dataclass(slots=True)
class Changes:
    """Row changes collected over a batch of decisions, written with a few statements."""

    run_updates: list[dict[str, Any]]
    stage_inserts: list[dict[str, Any]]
    stage_updates: list[dict[str, Any]]

    @classmethod
    def empty(cls) -> Changes:
        return cls([], [], [])


def diff(before: LoadedRun, after: RunState, changes: Changes, now: datetime) -> dict[str, uuid.UUID]:
    """Record in `changes` what differs between `before` and `after`; returns the stage ids (new ones
    get ids here)."""
    old = before.state
    run_delta = {f: getattr(after, f) for f in _RUN_FIELDS if getattr(after, f) != getattr(old, f)}
    if run_delta:
        changes.run_updates.append({"_id": after.id, "updated_at": now, **_plain(run_delta)})
    stage_ids = dict(before.stage_ids)
    for name, stage in after.stages.items():
        previous = old.stages.get(name)
        if previous is None:
            stage_id = uuid7()
            stage_ids[name] = stage_id
            changes.stage_inserts.append(
                {
                    "id": stage_id,
                    "run_id": after.id,
                    "name": name,
                    "base_name": stage.base_name or name,
                    "position": stage.position,
                    "matrix": stage.matrix,
                    "needs": list(stage.needs),
                    "pool": stage.pool,
                    "spec": stage.spec,
                    **_plain({f: getattr(stage, f) for f in _STAGE_FIELDS}),
                }
            )
            continue
        delta = {f: getattr(stage, f) for f in _STAGE_FIELDS if getattr(stage, f) != getattr(previous, f)}
        if delta:
            changes.stage_updates.append({"_id": stage_ids[name], **_plain(delta)})
    return stage_ids


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.value if isinstance(v, RunStatus | StageStatus) else v) for k, v in values.items()}


async def write(session: AsyncSession, changes: Changes) -> None:
    """Apply collected changes: updates grouped by the set of columns they touch (executemany)."""
    if changes.stage_inserts:
        await session.execute(insert(Stage), changes.stage_inserts)
    connection = await session.connection()
    tables = (cast(Table, Run.__table__), cast(Table, Stage.__table__))
    for table, rows in zip(tables, (changes.run_updates, changes.stage_updates), strict=True):
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            groups.setdefault(tuple(sorted(row)), []).append(row)
        for group in groups.values():
            # Keys that name columns become the SET clause; `_id` selects the row.
            await connection.execute(update(table).where(table.c.id == bindparam("_id")), group)


@dataclass(frozen=True, slots=True)
class NewAttempt:
    id: uuid.UUID
    run_id: uuid.UUID
    stage_id: uuid.UUID
    stage: str
    number: int
    pool: str
    dispatch_at: datetime | None = None


async def insert_attempts(session: AsyncSession, attempts: Sequence[NewAttempt]) -> None:
    if not attempts:
        return
    await session.execute(
        insert(StageAttempt),
        [
            {
                "id": a.id,
                "run_id": a.run_id,
                "stage_id": a.stage_id,
                "number": a.number,
                "pool": a.pool,
                "status": AttemptStatus.QUEUED.value,
                "dispatch_at": a.dispatch_at,
            }
            for a in attempts
        ],
    )
    await notify_dispatch(session, {a.pool for a in attempts if a.dispatch_at is None})


_NOTIFY_DISPATCH = text(
    "SELECT pg_notify('comet_dispatch', pool) FROM unnest(CAST(:pools AS text[])) AS pool"
)


async def notify_dispatch(session: AsyncSession, pools: set[str]) -> None:
    """Wake the idle workers of `pools` when the transaction commits: attempts wait for them."""
    if pools:
        await session.execute(_NOTIFY_DISPATCH, {"pools": sorted(pools)})


_CANCEL_QUEUED = text(
    "UPDATE stage_attempts SET status = 'cancelled', failure_kind = 'cancelled', "
    "failure_reason = :reason, finished_at = now() "
    "WHERE stage_id = ANY(:stage_ids) AND status = 'queued'"
)
_CANCEL_RUNNING = text(
    "UPDATE stage_attempts SET cancel_requested = true "
    "WHERE stage_id = ANY(:stage_ids) AND status = 'running' RETURNING id"
)


async def cancel_attempts(
    session: AsyncSession, stage_ids: Sequence[uuid.UUID], reason: str
) -> list[uuid.UUID]:
    """Cancel queued attempts outright; flag running ones (their workers stop them). Returns the
    ids of running attempts whose workers must be told."""
    if not stage_ids:
        return []
    await session.execute(_CANCEL_QUEUED, {"stage_ids": list(stage_ids), "reason": reason})
    rows = await session.execute(_CANCEL_RUNNING, {"stage_ids": list(stage_ids)})
    running = [r.id for r in rows]
    for attempt_id in running:
        await session.execute(text("SELECT pg_notify('comet_cancel', :id)"), {"id": str(attempt_id)})
    return running
