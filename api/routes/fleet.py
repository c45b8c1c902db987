"""The worker fleet and its queues: who serves which pool, and why a stage is still waiting.
Any authenticated user may read them (they name pools and stages, not project data)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import BackboneDep, CurrentUser, SessionDep
from api.errors import problem_responses
from api.queue_signals import read_signals
from api.routes import API_PREFIX
from db.repositories.fleet import list_workers
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
    summary="Queue depth, lag and scaling signals per pool",
    description="Per pool: waiting and running stages, the oldest waiting stage and its wait, Kafka lag "
    "of the pool's consumer group, busy and total slots of its live workers, whether a waiting stage "
    "can be taken by no live worker (none in the pool, or none with all of its labels), and the reason "
    "in words. The same figures are the `comet_queue_*{pool=…}` gauges of `/metrics`.",
    response_model=QueueList,
    responses=problem_responses(401),
)
async def get_queues(_: CurrentUser, backbone: BackboneDep) -> QueueList:
    signals = await read_signals(
        backbone.sessions, backbone.settings.kafka_bootstrap_servers, backbone.topics
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
                kafka_lag=s.lag,
                oldest_waiting_stage=q.oldest_stage,
                oldest_waiting_since=q.oldest_at,
                oldest_wait_s=None if q.oldest_wait_s is None else round(q.oldest_wait_s, 3),
                unschedulable=q.unschedulable > 0,
                unschedulable_stages=q.unschedulable,
                reason=q.reason,
            )
            for s in signals
            for q in (s.queue,)
        ]
    )
