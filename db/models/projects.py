"""Projects (Git repositories), who may do what in them, and what they keep: secrets,
webhook secrets, integrations, and the parsed pipeline definition of each commit seen."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, created_at_column, enum_check, id_column
from schemas.roles import Role


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (
        UniqueConstraint("provider", "provider_repo"),
        # Webhook intake's lookup: hosts treat repository names case-insensitively.
        Index("ix_projects_provider_repo_lower", "provider", func.lower(text("provider_repo"))),
    )

    id: Mapped[uuid.UUID] = id_column()
    name: Mapped[str] = mapped_column(String(100), unique=True)
    repo_url: Mapped[str] = mapped_column(String(2000))
    provider: Mapped[str] = mapped_column(String(32))
    provider_repo: Mapped[str | None] = mapped_column(String(400))
    default_branch: Mapped[str] = mapped_column(String(255), default="main")
    provider_api_url: Mapped[str | None] = mapped_column(String(2000))
    provider_token_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    run_counter: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    # Quarantine a flaky test automatically once its flip rate on the default branch reaches this
    # (0 < rate <= 1); null: only people quarantine.
    auto_quarantine_flip_rate: Mapped[float | None] = mapped_column(Float)
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = created_at_column()


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (enum_check("role", Role),)

    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = created_at_column()


class WebhookSecret(Base):
    """A project's webhook secret. Rotation adds a new one and gives the old an expiry (overlap)."""

    __tablename__ = "webhook_secrets"

    id: Mapped[uuid.UUID] = id_column()
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    # HMAC schemes (GitHub, Bitbucket) need the key itself: kept encrypted with COMET_SECRET_KEY.
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    # Token schemes (GitLab) only need equality: a SHA-256 of the token suffices.
    token_sha256: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = created_at_column()
    expires_at: Mapped[datetime | None]


class ProjectSecret(Base):
    __tablename__ = "project_secrets"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[uuid.UUID] = id_column()
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = created_at_column()


class Integration(Base):
    __tablename__ = "integrations"

    id: Mapped[uuid.UUID] = id_column()
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    config: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    secret_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    enabled: Mapped[bool] = mapped_column(default=True, server_default=text("true"))
    created_at: Mapped[datetime] = created_at_column()


class PipelineDefinition(Base):
    """`.comet.yml` as read at one commit: its text and either the parsed model or the error."""

    __tablename__ = "pipeline_definitions"
    __table_args__ = (UniqueConstraint("project_id", "sha", "path"),)

    id: Mapped[uuid.UUID] = id_column()
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    sha: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(255), default=".comet.yml")
    source: Mapped[str | None] = mapped_column(Text)
    parsed: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()
