"""Pipeline runs, their stages, each stage's attempts (with lease and fencing token), the log
chunks an attempt streams, and the workers that claim attempts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    Sequence,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, created_at_column, enum_check, id_column
from schemas.states import AttemptStatus, RunStatus, StageStatus

# Every claim draws a new token from this sequence: a higher token always means a later claim.
FENCING_TOKENS = Sequence("fencing_token_seq", metadata=Base.metadata)


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        enum_check("status", RunStatus),
        UniqueConstraint("project_id", "number"),
        Index("ix_runs_project_created", "project_id", text("id DESC")),
        Index("ix_runs_concurrency_group", "concurrency_group", "status"),
        Index("ix_runs_finished_at", "finished_at", postgresql_where=text("finished_at IS NOT NULL")),
    )

    id: Mapped[uuid.UUID] = id_column()
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(32))
    ref: Mapped[str] = mapped_column(String(500))
    sha: Mapped[str | None] = mapped_column(String(64))
    trigger: Mapped[dict[str, Any]] = mapped_column(JSONB)
    variables: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict)
    definition_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("pipeline_definitions.id", ondelete="SET NULL")
    )
    pipeline_name: Mapped[str | None] = mapped_column(String(200))
    concurrency_group: Mapped[str | None] = mapped_column(String(500))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    cancel_requested_at: Mapped[datetime | None]
    waiting_for_group: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    retry_of_status: Mapped[str | None] = mapped_column(String(32))
    retries: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # How many `run.changed` events the run has had: each carries the next number (decision 0030).
    revision: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = created_at_column()
    queued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = created_at_column()


class Stage(Base):
    __tablename__ = "stages"
    __table_args__ = (enum_check("status", StageStatus), UniqueConstraint("run_id", "name"))

    id: Mapped[uuid.UUID] = id_column()
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(300))
    base_name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer, default=0)
    matrix: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict)
    status: Mapped[str] = mapped_column(String(32))
    needs: Mapped[list[str]] = mapped_column(ARRAY(String(300)), default=list)
    pool: Mapped[str] = mapped_column(String(100), default="default")
    spec: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    exit_code: Mapped[int | None]
    failure_kind: Mapped[str | None] = mapped_column(String(32))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    # Why it ended as it did when its exit code alone does not say (quarantined test failures).
    note: Mapped[str | None] = mapped_column(Text)
    queued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class StageAttempt(Base):
    """One execution of a stage. `(stage_id, number)` is unique: one committed result per attempt."""

    __tablename__ = "stage_attempts"
    __table_args__ = (
        enum_check("status", AttemptStatus),
        UniqueConstraint("stage_id", "number"),
        Index(
            "ix_stage_attempts_running_lease",
            "lease_expires_at",
            postgresql_where=text("status = 'running'"),
        ),
        Index("ix_stage_attempts_queued_pool", "pool", postgresql_where=text("status = 'queued'")),
        Index(
            "ix_stage_attempts_queued_pool_age",
            "pool",
            "queued_at",
            postgresql_where=text("status = 'queued'"),
        ),
    )

    id: Mapped[uuid.UUID] = id_column()
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    stage_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stages.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))
    pool: Mapped[str] = mapped_column(String(100))
    # The stage's labels: only a worker of `pool` advertising all of them may claim it (0026).
    labels: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    worker_id: Mapped[str | None] = mapped_column(String(200))
    fencing_token: Mapped[int | None] = mapped_column(BigInteger)
    lease_expires_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    cancel_requested: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    # Set while a retry waits out its backoff; the reaper dispatches it when due.
    dispatch_at: Mapped[datetime | None]
    exit_code: Mapped[int | None]
    failure_kind: Mapped[str | None] = mapped_column(String(32))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    log_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    log_truncated: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    # What the attempt's test reports said ({total, passed, failed, ...}; null: no reports
    # asked for) and the reports that could not be read ([{file, reason}]).
    test_summary: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    report_errors: Mapped[list[dict[str, str]]] = mapped_column(
        JSONB, default=list, server_default=text("'[]'::jsonb")
    )
    queued_at: Mapped[datetime] = created_at_column()
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class LogChunk(Base):
    __tablename__ = "log_chunks"

    attempt_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("stage_attempts.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()


class Worker(Base):
    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    pool: Mapped[str] = mapped_column(String(100), index=True)
    labels: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict)
    concurrency: Mapped[int] = mapped_column(Integer)
    busy: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="active")
    started_at: Mapped[datetime] = created_at_column()
    last_heartbeat_at: Mapped[datetime] = created_at_column()
    stopped_at: Mapped[datetime | None]
