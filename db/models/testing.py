"""Test suites, the test reports and cases parsed from stages, coverage, and deployments."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, created_at_column, id_column


class TestSuite(Base):
    __tablename__ = "test_suites"
    __test__ = False  # not a pytest class

    id: Mapped[uuid.UUID] = id_column()
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    ref: Mapped[str | None] = mapped_column(String(500))
    stages: Mapped[list[str]] = mapped_column(JSONB, default=list)
    framework: Mapped[str | None] = mapped_column(String(50))
    schedule: Mapped[str | None] = mapped_column(String(100))
    variables: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict)
    next_run_at: Mapped[datetime | None]
    last_run_id: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime] = created_at_column()


class TestReport(Base):
    """One parsed report file of one stage attempt (JUnit XML and friends)."""

    __tablename__ = "test_reports"
    __test__ = False

    id: Mapped[uuid.UUID] = id_column()
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    stage_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stages.id", ondelete="CASCADE"))
    attempt_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stage_attempts.id", ondelete="CASCADE"))
    framework: Mapped[str] = mapped_column(String(50))
    path: Mapped[str] = mapped_column(String(1000))
    tests: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = created_at_column()


class TestCase(Base):
    __tablename__ = "test_cases"
    __test__ = False
    __table_args__ = (Index("ix_test_cases_identity", "project_id", "suite", "classname", "name"),)

    id: Mapped[uuid.UUID] = id_column()
    report_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("test_reports.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    suite: Mapped[str] = mapped_column(String(500))
    classname: Mapped[str] = mapped_column(String(500))
    name: Mapped[str] = mapped_column(String(1000))
    status: Mapped[str] = mapped_column(String(16))
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str | None] = mapped_column(Text)


class CoverageReport(Base):
    __tablename__ = "coverage_reports"

    id: Mapped[uuid.UUID] = id_column()
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    stage_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stages.id", ondelete="CASCADE"))
    format: Mapped[str] = mapped_column(String(20))
    lines_covered: Mapped[int] = mapped_column(Integer)
    lines_valid: Mapped[int] = mapped_column(Integer)
    branches_covered: Mapped[int | None] = mapped_column(Integer)
    branches_valid: Mapped[int | None] = mapped_column(Integer)
    files: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = created_at_column()


class Deployment(Base):
    __tablename__ = "deployments"

    id: Mapped[uuid.UUID] = id_column()
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    stage_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stages.id", ondelete="CASCADE"), unique=True)
    environment: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(32))
    ref: Mapped[str] = mapped_column(String(500))
    sha: Mapped[str | None] = mapped_column(String(64))
    approval_required: Mapped[bool] = mapped_column(default=False)
    approved_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    approved_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at_column()
    finished_at: Mapped[datetime | None]
