"""Loading runs as `RunState` for `decide()` (locked for the transaction) and describing what a
batch of decisions changed, as the `run.changed` event carries it: the orchestrator shell's only
door to the runs, stages and attempts tables. The rows are written by the projection
(`db/projection.py`) from that event, live exactly as when rebuilding (decision 0021)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Deployment, Stage
from orchestrator.model import DeploymentState, Review, RunState, StageState
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
    # The run's last `run.changed` number: the next one this transaction emits is revision + 1.
    revision: int = 0


def stage_state(row: Stage | Any) -> StageState:
    """A stage row (an ORM entity or a plain row of `stages`) as decide() sees it."""
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


# Plain rows, not ORM entities: the engine reads them into RunState and writes through the
# projection (core SQL), so an identity map would only cost time (≈ a third of the load's CPU).
_RUNS_FOR_UPDATE = text("SELECT * FROM runs WHERE id = ANY(:ids) ORDER BY id FOR UPDATE")
_STAGES_OF = text("SELECT * FROM stages WHERE run_id = ANY(:ids) ORDER BY run_id, position")


async def load_for_update(session: AsyncSession, run_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, LoadedRun]:
    """Lock the runs (in id order, so concurrent orchestrators cannot deadlock) and load their stages."""
    ids = sorted(set(run_ids))
    if not ids:
        return {}
    runs = (await session.execute(_RUNS_FOR_UPDATE, {"ids": ids})).all()
    stages = (await session.execute(_STAGES_OF, {"ids": ids})).all()
    by_run: dict[uuid.UUID, list[Any]] = {}
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
            stages={s.name: stage_state(s) for s in rows},
            failure_reason=run.failure_reason,
            pipeline_name=run.pipeline_name,
            concurrency_group=run.concurrency_group,
            retries=run.retries,
            cancel_requested_at=run.cancel_requested_at,
            waiting_for_group=run.waiting_for_group,
            queued_at=run.queued_at,
            started_at=run.started_at,
            finished_at=run.finished_at,
            created_by=run.created_by,
        )
        loaded[run.id] = LoadedRun(state, {s.name: s.id for s in rows}, run.revision)
    # Only a stage with an environment ever has deployments (decision 0027): most batches have none.
    deploying = [
        run_id
        for run_id, lr in loaded.items()
        if any(s.spec.get("environment") for s in by_run.get(run_id, []))
    ]
    await _load_deployments(session, deploying, loaded)
    return loaded


_DEPLOYMENT_FIELDS = (
    "status",
    "reason",
    "approvals",
    "ready_at",
    "wait_until",
    "expires_at",
    "started_at",
    "finished_at",
)


def _deployment_state(row: Deployment) -> DeploymentState:
    return DeploymentState(
        id=row.id,
        stage=row.stage,
        number=row.number,
        environment=row.environment,
        status=row.status,
        ref=row.ref,
        sha=row.sha,
        url=row.url,
        reason=row.reason,
        rollback_of=row.rollback_of,
        triggered_by=row.triggered_by,
        approvals=tuple(
            Review(str(a["user_id"]), str(a["decision"]), str(a.get("comment") or ""), _instant(a["at"]))
            for a in row.approvals
        ),
        required_approvals=row.required_approvals,
        allow_self_approval=row.allow_self_approval,
        ready_at=row.ready_at,
        wait_until=row.wait_until,
        expires_at=row.expires_at,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def _instant(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


async def _load_deployments(
    session: AsyncSession, run_ids: list[uuid.UUID], loaded: dict[uuid.UUID, LoadedRun]
) -> None:
    """Each deploying stage's latest deployment into its run's state (decision 0027)."""
    if not run_ids:
        return
    rows = (
        await session.scalars(
            select(Deployment).where(Deployment.run_id.in_(run_ids)).order_by(Deployment.number)
        )
    ).all()
    found: dict[uuid.UUID, dict[str, DeploymentState]] = {}
    for row in rows:
        found.setdefault(row.run_id, {})[row.stage] = _deployment_state(row)
    for run_id, deployments in found.items():
        if run_id in loaded:
            before = loaded[run_id]
            loaded[run_id] = dataclasses.replace(
                before, state=dataclasses.replace(before.state, deployments=deployments)
            )


@dataclass(slots=True)
class RunDelta:
    """What a batch of decisions changed in one run's rows, as the `run.changed` event carries it
    (JSON-ready values are made by the event; the projection writes them)."""

    run: dict[str, Any]
    new_stages: list[dict[str, Any]]
    stages: dict[str, dict[str, Any]]
    stage_ids: dict[str, uuid.UUID]
    # The number of the `run.changed` carrying this delta (the run's revision before, plus one).
    revision: int = 1

    new_deployments: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    deployments: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.run or self.new_stages or self.stages or self.new_deployments or self.deployments)


def diff(before: LoadedRun, after: RunState, now: datetime) -> RunDelta:
    """What differs between `before` and `after` (new stages get their ids here)."""
    old = before.state
    run_delta = {f: getattr(after, f) for f in _RUN_FIELDS if getattr(after, f) != getattr(old, f)}
    delta = RunDelta(
        {"updated_at": now, **_plain(run_delta)} if run_delta else {},
        [],
        {},
        dict(before.stage_ids),
        before.revision + 1,
    )
    for name, stage in after.stages.items():
        previous = old.stages.get(name)
        if previous is None:
            stage_id = uuid7()
            delta.stage_ids[name] = stage_id
            delta.new_stages.append(
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
        changed = {f: getattr(stage, f) for f in _STAGE_FIELDS if getattr(stage, f) != getattr(previous, f)}
        if changed:
            delta.stages[str(delta.stage_ids[name])] = _plain(changed)
    _diff_deployments(old, after, delta, now)
    return delta


def _deployment_values(deployment: DeploymentState, fields: Iterable[str]) -> dict[str, Any]:
    values = {f: getattr(deployment, f) for f in fields}
    if "approvals" in values:
        values["approvals"] = [r.row() for r in deployment.approvals]
    return values


def _diff_deployments(old: RunState, after: RunState, delta: RunDelta, now: datetime) -> None:
    """New deployments as whole rows, others' changed columns (by id), into `delta`."""
    for name, deployment in after.deployments.items():
        previous = old.deployments.get(name)
        if previous is None or previous.id != deployment.id:
            delta.new_deployments.append(
                {
                    "id": deployment.id,
                    "project_id": after.project_id,
                    "run_id": after.id,
                    "stage_id": delta.stage_ids[name],
                    "stage": name,
                    "number": deployment.number,
                    "environment": deployment.environment,
                    "ref": deployment.ref,
                    "sha": deployment.sha,
                    "url": deployment.url,
                    "rollback_of": deployment.rollback_of,
                    "triggered_by": deployment.triggered_by,
                    "required_approvals": deployment.required_approvals,
                    "allow_self_approval": deployment.allow_self_approval,
                    "created_at": deployment.created_at or now,
                    "updated_at": now,
                    **_deployment_values(deployment, _DEPLOYMENT_FIELDS),
                }
            )
            continue
        changed = [f for f in _DEPLOYMENT_FIELDS if getattr(deployment, f) != getattr(previous, f)]
        if changed:
            delta.deployments[str(deployment.id)] = {
                "updated_at": now,
                **_deployment_values(deployment, changed),
            }


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.value if isinstance(v, RunStatus | StageStatus) else v) for k, v in values.items()}


@dataclass(frozen=True, slots=True)
class NewAttempt:
    id: uuid.UUID
    run_id: uuid.UUID
    stage_id: uuid.UUID
    stage: str
    number: int
    pool: str
    dispatch_at: datetime | None = None
    # The stage's labels (its spec's `labels`): who may claim it (docs/decisions/0026).
    labels: dict[str, str] = field(default_factory=dict)

    def row(self, now: datetime) -> dict[str, Any]:
        """The `stage_attempts` row (as `run.changed` carries it)."""
        row: dict[str, Any] = {
            "id": self.id,
            "run_id": self.run_id,
            "stage_id": self.stage_id,
            "number": self.number,
            "pool": self.pool,
            "status": AttemptStatus.QUEUED.value,
            "dispatch_at": self.dispatch_at,
            "queued_at": now,
        }
        if self.labels:
            # Only when set: the events of unlabelled attempts stay as they were (the column's
            # default is {}), and rebuild writes what the event says.
            row["labels"] = dict(self.labels)
        return row


_ACTIVE_ATTEMPTS = text(
    "SELECT id, stage_id, status FROM stage_attempts "
    "WHERE stage_id = ANY(:stage_ids) AND status IN ('queued', 'running') ORDER BY id FOR UPDATE"
)


@dataclass(frozen=True, slots=True)
class ActiveAttempt:
    id: uuid.UUID
    stage_id: uuid.UUID
    queued: bool


async def active_attempts(session: AsyncSession, stage_ids: Sequence[uuid.UUID]) -> list[ActiveAttempt]:
    """The queued and running attempts of `stage_ids`, locked (a worker cannot claim or finish one
    until the transaction that cancels them commits)."""
    if not stage_ids:
        return []
    rows = await session.execute(_ACTIVE_ATTEMPTS, {"stage_ids": list(stage_ids)})
    return [ActiveAttempt(r.id, r.stage_id, r.status == AttemptStatus.QUEUED.value) for r in rows]


_NOTIFY_DISPATCH = text(
    "SELECT pg_notify('comet_dispatch', pool) FROM unnest(CAST(:pools AS text[])) AS pool"
)


async def notify_dispatch(session: AsyncSession, pools: set[str]) -> None:
    """Wake the idle workers of `pools` when the transaction commits: attempts wait for them."""
    if pools:
        await session.execute(_NOTIFY_DISPATCH, {"pools": sorted(pools)})


_NOTIFY_CANCEL = text("SELECT pg_notify('comet_cancel', id) FROM unnest(CAST(:ids AS text[])) AS id")


async def notify_cancel(session: AsyncSession, attempt_ids: Sequence[uuid.UUID]) -> None:
    """Tell the workers running `attempt_ids` to stop them, when the transaction commits."""
    if attempt_ids:
        await session.execute(_NOTIFY_CANCEL, {"ids": [str(a) for a in attempt_ids]})
