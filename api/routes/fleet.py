"""The worker fleet and its queues: who serves which pool, and why a stage is still waiting.
Any authenticated user may read them (they name pools and stages, not project data)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import BackboneDep, CurrentUser, SessionDep
from api.errors import problem_responses
from api.routes import API_PREFIX
from db.repositories.fleet import list_queues, list_workers
from events.lag import dispatch_lag
from schemas.api.fleet import QueueList, QueueOut, WorkerList, WorkerOut

router = APIRouter(prefix=API_PREFIX, tags=["workers"])


@router.get(
    "/workers",
    summary="List workers",
    description="Workers with their pool, labels, slots, busy slots and last heartbeat.",
    response_model=WorkerList,
    responses=problem_responses(401),
)
async def get_workers(_: CurrentUser, session: SessionDep) -> WorkerList:
    rows = await list_workers(session)
    return WorkerList(
        data=[
            WorkerOut(
                id=w.id,
                pool=w.pool,
                labels=w.labels,
                slots=w.concurrency,
                busy=w.busy,
                status=w.state,
                hostname=w.hostname,
                pid=w.pid,
                started_at=w.started_at,
                last_heartbeat_at=w.last_heartbeat_at,
                seconds_since_heartbeat=round(w.silent_s, 3),
            )
            for w in rows
        ]
    )


@router.get(
    "/queues",
    summary="Queue depth and lag per pool",
    description="Per pool: queued attempts, the oldest waiting stage and its wait, Kafka lag of the "
    "pool's consumer group, and a reason when nobody can take the work (no worker serves the pool).",
    response_model=QueueList,
    responses=problem_responses(401),
)
async def get_queues(_: CurrentUser, session: SessionDep, backbone: BackboneDep) -> QueueList:
    rows = await list_queues(session)
    lag = await dispatch_lag(
        backbone.settings.kafka_bootstrap_servers, backbone.topics, [q.pool for q in rows], timeout_s=2.0
    )
    return QueueList(
        data=[
            QueueOut(
                pool=q.pool,
                depth=q.depth,
                running=q.running,
                workers=q.workers,
                slots=q.slots,
                busy=q.busy,
                kafka_lag=lag.get(q.pool),
                oldest_waiting_stage=q.oldest_stage,
                oldest_waiting_since=q.oldest_at,
                oldest_wait_s=None if q.oldest_wait_s is None else round(q.oldest_wait_s, 3),
                reason=q.reason,
            )
            for q in rows
        ]
    )
