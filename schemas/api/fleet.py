"""Public shapes of the worker fleet (`GET /workers`) and its queues (`GET /queues`)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


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
    pool: str
    depth: int
    running: int
    workers: int
    slots: int
    busy: int
    kafka_lag: int | None
    oldest_waiting_stage: str | None
    oldest_waiting_since: datetime | None
    oldest_wait_s: float | None
    reason: str | None


class WorkerList(BaseModel):
    data: list[WorkerOut]
    next_cursor: str | None = None


class QueueList(BaseModel):
    data: list[QueueOut]
    next_cursor: str | None = None
