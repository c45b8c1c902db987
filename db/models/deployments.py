"""Environments (a project's deployment targets and their protection rules, configuration) and
deployments (one row per time a stage deploys to one: the projection of the deployment rows
`run.changed` carries, decision 0027)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, created_at_column, id_column
from schemas.deployments import DEPLOYMENT_STATUSES


class Environment(Base):
    """A project's environment and its protection rules (an environment nobody configured deploys
    with the default rules: no approvals beyond the stage's own `approval:`, any branch)."""

    __tablename__ = "environments"
    __table_args__ = (
        UniqueConstraint("project_id", "name"),
        CheckConstraint("required_approvals BETWEEN 0 AND 5", name="required_approvals_range"),
    )

    id: Mapped[uuid.UUID] = id_column()
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    required_approvals: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    allow_self_approval: Mapped[bool] = mapped_column(default=True, server_default=text("true"))
    branches: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    wait_timer_s: Mapped[float] = mapped_column(Float, default=0.0, server_default=text("0"))
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = created_at_column()


_STATUSES = ", ".join(f"'{s}'" for s in DEPLOYMENT_STATUSES)


class Deployment(Base):
    __tablename__ = "deployments"
    __table_args__ = (
        CheckConstraint(f"status IN ({_STATUSES})", name="status_valid"),
        Index("ix_deployments_run", "run_id"),
        Index("ix_deployments_stage", "stage_id"),
        Index("ix_deployments_environment", "project_id", "environment", "status"),
        Index("ix_deployments_listing", "project_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = id_column()
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    stage_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stages.id", ondelete="CASCADE"))
    stage: Mapped[str] = mapped_column(String(300), server_default="")
    # The how-many-th deployment of its stage (a retried run deploys again: a new row).
    number: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    environment: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(32))
    # Why it waits (approvals, a wait timer, another deployment), or why it was refused or failed.
    reason: Mapped[str | None] = mapped_column(Text)
    ref: Mapped[str] = mapped_column(String(500))
    sha: Mapped[str | None] = mapped_column(String(64))
    url: Mapped[str | None] = mapped_column(Text)
    rollback_of: Mapped[uuid.UUID | None]
    triggered_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # [{user_id, decision, comment, at}], in the order they were given.
    approvals: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, default=list, server_default=text("'[]'::jsonb")
    )
    required_approvals: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    allow_self_approval: Mapped[bool] = mapped_column(default=True, server_default=text("true"))
    # Cleared to deploy, waiting only for its environment to be free (its place in line).
    ready_at: Mapped[datetime | None]
    wait_until: Mapped[datetime | None]  # its environment's wait timer ends
    expires_at: Mapped[datetime | None]  # its approvals are due by then
    created_at: Mapped[datetime] = created_at_column()
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]
