"""Testing automation: test suites and schedules, the test cases and coverage parsed from stage
reports, quarantined tests (deployments are in `db/models/deployments.py`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, created_at_column, enum_check, id_column
from schemas.states import TestStatus


class TestSuite(Base):
    """A named selection of a project's test stages (names or globs) to run on a ref, by hand or on
    a schedule; its runs hold only those stages and what they need."""

    __tablename__ = "test_suites"
    __test__ = False  # not a pytest class
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[uuid.UUID] = id_column()
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    stages: Mapped[list[str]] = mapped_column(JSONB, default=list)
    ref: Mapped[str] = mapped_column(String(500))
    variables: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict)
    schedule_cron: Mapped[str | None] = mapped_column(String(200))
    schedule_timezone: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = created_at_column()


class Schedule(Base):
    """A schedule that fires runs: from a pipeline's `on.schedule` (kept in step with the
    definition on its ref) or from a test suite. `next_fire_at` is when it fires next."""

    __tablename__ = "schedules"
    __table_args__ = (
        UniqueConstraint("project_id", "source", "name"),
        CheckConstraint("source IN ('pipeline', 'test_suite')", name="source_valid"),
        Index("ix_schedules_next_fire_at", "next_fire_at"),
    )

    id: Mapped[uuid.UUID] = id_column()
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(300))
    suite_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("test_suites.id", ondelete="CASCADE"))
    cron: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    ref: Mapped[str] = mapped_column(String(500))
    variables: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict)
    next_fire_at: Mapped[datetime | None]
    last_tick_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = created_at_column()


class ScheduleTick(Base):
    """One fired tick of a schedule: unique, so no restart, replay or second orchestrator fires
    a tick twice (inserted in the transaction that creates the tick's run)."""

    __tablename__ = "schedule_ticks"

    schedule_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("schedules.id", ondelete="CASCADE"), primary_key=True
    )
    tick: Mapped[datetime] = mapped_column(primary_key=True)
    run_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    fired_at: Mapped[datetime] = created_at_column()


class TestCase(Base):
    """One test's result in one stage attempt, as its report said. Written in bulk by the worker
    under the attempt's fencing token; ids are a sequence (cheap to insert, cursor order)."""

    __tablename__ = "test_cases"
    __test__ = False
    __table_args__ = (
        enum_check("status", TestStatus),
        Index("ix_test_cases_run", "run_id", "id"),
        Index("ix_test_cases_history", "project_id", "key", "id"),
        Index("ix_test_cases_attempt", "attempt_id"),
        Index("ix_test_cases_sha", "project_id", "sha", "key"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # Only the attempt is a foreign key (deleting a run or project cascades through it): bulk
    # inserts of thousands of cases check one reference each, not four.
    attempt_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stage_attempts.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID]
    run_id: Mapped[uuid.UUID]
    stage_id: Mapped[uuid.UUID]
    stage: Mapped[str] = mapped_column(String(300))
    attempt: Mapped[int] = mapped_column(Integer)
    ref: Mapped[str] = mapped_column(String(500))
    sha: Mapped[str | None] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(Text)
    classname: Mapped[str] = mapped_column(Text)
    file: Mapped[str | None] = mapped_column(Text)
    line: Mapped[int | None] = mapped_column(Integer)
    suite: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    duration_s: Mapped[float] = mapped_column(Float)
    message: Mapped[str | None] = mapped_column(Text)
    output: Mapped[str | None] = mapped_column(Text)
    flaky: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    quarantined: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    created_at: Mapped[datetime] = created_at_column()


class TestQuarantine(Base):
    """A quarantined test of a project: its failures no longer fail its stage. Set by a person
    (audited) or automatically (`quarantined_by` null) past the project's flip-rate threshold."""

    __tablename__ = "test_quarantine"
    __test__ = False

    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    classname: Mapped[str | None] = mapped_column(Text)
    file: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    quarantined_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = created_at_column()


class CoverageReport(Base):
    """The coverage one stage attempt measured (Cobertura or lcov, merged when several)."""

    __tablename__ = "coverage_reports"
    __table_args__ = (
        Index("ix_coverage_reports_trend", "project_id", "ref", "created_at"),
        Index("ix_coverage_reports_run", "run_id"),
    )

    id: Mapped[uuid.UUID] = id_column()
    attempt_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("stage_attempts.id", ondelete="CASCADE"), unique=True
    )
    project_id: Mapped[uuid.UUID]
    run_id: Mapped[uuid.UUID]
    stage_id: Mapped[uuid.UUID]
    stage: Mapped[str] = mapped_column(String(300))
    ref: Mapped[str] = mapped_column(String(500))
    sha: Mapped[str | None] = mapped_column(String(64))
    line_rate: Mapped[float | None] = mapped_column(Float)
    branch_rate: Mapped[float | None] = mapped_column(Float)
    lines_covered: Mapped[int] = mapped_column(Integer)
    lines_valid: Mapped[int] = mapped_column(Integer)
    branches_covered: Mapped[int] = mapped_column(Integer)
    branches_valid: Mapped[int] = mapped_column(Integer)
    files: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    created_at: Mapped[datetime] = created_at_column()
