"""Public shapes of the worker fleet (`GET /workers`) and its queues (`GET /queues`)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class WorkerOut(BaseModel):
    id: str
    pool: str
    labels: dict[str, str]
    slots: int
    busy: int
    status: str
    hostname: str
    pid: int
    started_at: datetime
    last_heartbeat_at: datetime
    seconds_since_heartbeat: float


class QueueOut(BaseModel):
    """One pool's queue: the signals to scale its workers on. Each figure is also a gauge of
    `/metrics`, labelled `pool` (named after the field)."""

    pool: str
    depth: int = Field(
        description="Stages waiting for a worker of the pool, not in a retry's backoff "
        "(`comet_queue_queued_stages`)."
    )
    running: int = Field(description="Stages running on the pool's workers (`comet_queue_running_stages`).")
    workers: int = Field(description="Live workers of the pool (active, heartbeat within 30 s).")
    slots: int = Field(description="Slots of the live workers (`comet_queue_total_slots`).")
    busy: int = Field(description="Busy slots as of the workers' last heartbeats (`comet_queue_busy_slots`).")
    kafka_lag: int | None = Field(
        description="Dispatch events of the pool its consumer group has not read; null when Kafka "
        "did not answer in time (`comet_queue_consumer_lag`)."
    )
    oldest_waiting_stage: str | None
    oldest_waiting_since: datetime | None
    oldest_wait_s: float | None = Field(
        description="Seconds the oldest waiting stage has waited (`comet_queue_oldest_wait_seconds`)."
    )
    unschedulable: bool = Field(
        default=False,
        description="Whether a waiting stage can be taken by no live worker: none in the pool, or "
        "none with all of the stage's labels (`comet_queue_unschedulable`).",
    )
    unschedulable_stages: int = Field(
        default=0,
        description="How many waiting stages no live worker can take (`comet_queue_unschedulable_stages`).",
    )
    reason: str | None = Field(
        description="Why stages wait, when it is not just a busy fleet: e.g. `no live worker in pool "
        "linux has arch=arm64`."
    )


class WorkerList(BaseModel):
    data: list[WorkerOut]
    next_cursor: str | None = None


class QueueList(BaseModel):
    data: list[QueueOut]
    next_cursor: str | None = None
