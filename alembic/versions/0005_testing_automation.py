"""Testing automation: test cases and coverage parsed from stage reports (replacing the unused
report tables of 0001), quarantined tests, test summaries on attempts, test suites with a
schedule, and schedules with their fired ticks.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 00:23:04.999465
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOW = sa.text("now()")


def _created_at(name: str = "created_at") -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=_NOW, nullable=False)


def upgrade() -> None:
    # 0001's report tables were never written to: replaced, not migrated.
    op.drop_index(op.f("ix_test_cases_report_id"), table_name="test_cases")
    op.drop_index("ix_test_cases_identity", table_name="test_cases")
    op.drop_table("test_cases")
    op.drop_index(op.f("ix_test_reports_run_id"), table_name="test_reports")
    op.drop_table("test_reports")
    op.drop_index(op.f("ix_coverage_reports_project_id"), table_name="coverage_reports")
    op.drop_table("coverage_reports")

    op.create_table(
        "test_cases",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("attempt_id", sa.UUID(), nullable=False),
        sa.Column("project_id", sa.UUID(), nullable=False),
        sa.Column("run_id", sa.UUID(), nullable=False),
        sa.Column("stage_id", sa.UUID(), nullable=False),
        sa.Column("stage", sa.String(length=300), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("ref", sa.String(length=500), nullable=False),
        sa.Column("sha", sa.String(length=64), nullable=True),
        sa.Column("key", sa.String(length=40), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("classname", sa.Text(), nullable=False),
        sa.Column("file", sa.Text(), nullable=True),
        sa.Column("line", sa.Integer(), nullable=True),
        sa.Column("suite", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("flaky", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("quarantined", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        _created_at(),
        sa.CheckConstraint(
            "status IN ('passed', 'failed', 'errored', 'skipped')", name=op.f("ck_test_cases_status_valid")
        ),
        sa.ForeignKeyConstraint(
            ["attempt_id"],
            ["stage_attempts.id"],
            name=op.f("fk_test_cases_attempt_id_stage_attempts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_test_cases")),
    )
    op.create_index("ix_test_cases_attempt", "test_cases", ["attempt_id"], unique=False)
    op.create_index("ix_test_cases_history", "test_cases", ["project_id", "key", "id"], unique=False)
    op.create_index("ix_test_cases_run", "test_cases", ["run_id", "id"], unique=False)
    op.create_index("ix_test_cases_sha", "test_cases", ["project_id", "sha", "key"], unique=False)

    op.create_table(
        "coverage_reports",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("attempt_id", sa.UUID(), nullable=False),
        sa.Column("project_id", sa.UUID(), nullable=False),
        sa.Column("run_id", sa.UUID(), nullable=False),
        sa.Column("stage_id", sa.UUID(), nullable=False),
        sa.Column("stage", sa.String(length=300), nullable=False),
        sa.Column("ref", sa.String(length=500), nullable=False),
        sa.Column("sha", sa.String(length=64), nullable=True),
        sa.Column("line_rate", sa.Float(), nullable=True),
        sa.Column("branch_rate", sa.Float(), nullable=True),
        sa.Column("lines_covered", sa.Integer(), nullable=False),
        sa.Column("lines_valid", sa.Integer(), nullable=False),
        sa.Column("branches_covered", sa.Integer(), nullable=False),
        sa.Column("branches_valid", sa.Integer(), nullable=False),
        sa.Column("files", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        _created_at(),
        sa.ForeignKeyConstraint(
            ["attempt_id"],
            ["stage_attempts.id"],
            name=op.f("fk_coverage_reports_attempt_id_stage_attempts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coverage_reports")),
        sa.UniqueConstraint("attempt_id", name=op.f("uq_coverage_reports_attempt_id")),
    )
    op.create_index("ix_coverage_reports_run", "coverage_reports", ["run_id"], unique=False)
    op.create_index(
        "ix_coverage_reports_trend", "coverage_reports", ["project_id", "ref", "created_at"], unique=False
    )

    op.create_table(
        "test_quarantine",
        sa.Column("project_id", sa.UUID(), nullable=False),
        sa.Column("key", sa.String(length=40), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("classname", sa.Text(), nullable=True),
        sa.Column("file", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("quarantined_by", sa.UUID(), nullable=True),
        _created_at(),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_test_quarantine_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["quarantined_by"],
            ["users.id"],
            name=op.f("fk_test_quarantine_quarantined_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("project_id", "key", name=op.f("pk_test_quarantine")),
    )
    op.add_column("projects", sa.Column("auto_quarantine_flip_rate", sa.Float(), nullable=True))
    op.add_column(
        "stage_attempts",
        sa.Column("test_summary", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    op.add_column(
        "stage_attempts",
        sa.Column(
            "report_errors",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
    )

    op.drop_column("test_suites", "last_run_id")
    op.drop_column("test_suites", "framework")
    op.drop_column("test_suites", "schedule")
    op.drop_column("test_suites", "next_run_at")
    op.add_column("test_suites", sa.Column("schedule_cron", sa.String(length=200), nullable=True))
    op.add_column("test_suites", sa.Column("schedule_timezone", sa.String(length=64), nullable=True))
    op.add_column("test_suites", sa.Column("created_by", sa.UUID(), nullable=True))
    op.add_column("test_suites", _created_at("updated_at"))
    op.execute("UPDATE test_suites SET ref = 'refs/heads/main' WHERE ref IS NULL")
    op.alter_column("test_suites", "ref", existing_type=sa.VARCHAR(length=500), nullable=False)
    op.create_unique_constraint(op.f("uq_test_suites_project_id_name"), "test_suites", ["project_id", "name"])
    op.create_foreign_key(
        op.f("fk_test_suites_created_by_users"),
        "test_suites",
        "users",
        ["created_by"],
        ["id"],
        ondelete="SET NULL",
    )

    op.create_table(
        "schedules",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("project_id", sa.UUID(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("suite_id", sa.UUID(), nullable=True),
        sa.Column("cron", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("ref", sa.String(length=500), nullable=False),
        sa.Column("variables", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("next_fire_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_tick_at", sa.DateTime(timezone=True), nullable=True),
        _created_at(),
        _created_at("updated_at"),
        sa.CheckConstraint("source IN ('pipeline', 'test_suite')", name=op.f("ck_schedules_source_valid")),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_schedules_project_id_projects"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["suite_id"],
            ["test_suites.id"],
            name=op.f("fk_schedules_suite_id_test_suites"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
        sa.UniqueConstraint("project_id", "source", "name", name=op.f("uq_schedules_project_id_source_name")),
    )
    op.create_index("ix_schedules_next_fire_at", "schedules", ["next_fire_at"], unique=False)
    op.create_table(
        "schedule_ticks",
        sa.Column("schedule_id", sa.UUID(), nullable=False),
        sa.Column("tick", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.UUID(), nullable=True),
        _created_at("fired_at"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_schedule_ticks_run_id_runs"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name=op.f("fk_schedule_ticks_schedule_id_schedules"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("schedule_id", "tick", name=op.f("pk_schedule_ticks")),
    )


def downgrade() -> None:
    op.drop_table("schedule_ticks")
    op.drop_index("ix_schedules_next_fire_at", table_name="schedules")
    op.drop_table("schedules")
    op.drop_constraint(op.f("fk_test_suites_created_by_users"), "test_suites", type_="foreignkey")
    op.drop_constraint(op.f("uq_test_suites_project_id_name"), "test_suites", type_="unique")
    op.alter_column("test_suites", "ref", existing_type=sa.VARCHAR(length=500), nullable=True)
    op.drop_column("test_suites", "updated_at")
    op.drop_column("test_suites", "created_by")
    op.drop_column("test_suites", "schedule_timezone")
    op.drop_column("test_suites", "schedule_cron")
    op.add_column("test_suites", sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("test_suites", sa.Column("schedule", sa.String(length=100), nullable=True))
    op.add_column("test_suites", sa.Column("framework", sa.String(length=50), nullable=True))
    op.add_column("test_suites", sa.Column("last_run_id", sa.UUID(), nullable=True))
    op.drop_column("stage_attempts", "report_errors")
    op.drop_column("stage_attempts", "test_summary")
    op.drop_column("projects", "auto_quarantine_flip_rate")
    op.drop_table("test_quarantine")
    op.drop_index("ix_coverage_reports_trend", table_name="coverage_reports")
    op.drop_index("ix_coverage_reports_run", table_name="coverage_reports")
    op.drop_table("coverage_reports")
    op.drop_index("ix_test_cases_sha", table_name="test_cases")
    op.drop_index("ix_test_cases_run", table_name="test_cases")
    op.drop_index("ix_test_cases_history", table_name="test_cases")
    op.drop_index("ix_test_cases_attempt", table_name="test_cases")
    op.drop_table("test_cases")
    _recreate_0001_report_tables()


def _recreate_0001_report_tables() -> None:
    def fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
        return sa.ForeignKeyConstraint(
            [column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"), ondelete="CASCADE"
        )

    op.create_table(
        "coverage_reports",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("project_id", sa.UUID(), nullable=False),
        sa.Column("run_id", sa.UUID(), nullable=False),
        sa.Column("stage_id", sa.UUID(), nullable=False),
        sa.Column("format", sa.String(length=20), nullable=False),
        sa.Column("lines_covered", sa.Integer(), nullable=False),
        sa.Column("lines_valid", sa.Integer(), nullable=False),
        sa.Column("branches_covered", sa.Integer(), nullable=True),
        sa.Column("branches_valid", sa.Integer(), nullable=True),
        sa.Column("files", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        _created_at(),
        fk("coverage_reports", "project_id", "projects"),
        fk("coverage_reports", "run_id", "runs"),
        fk("coverage_reports", "stage_id", "stages"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coverage_reports")),
    )
    op.create_index(op.f("ix_coverage_reports_project_id"), "coverage_reports", ["project_id"], unique=False)
    op.create_table(
        "test_reports",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("run_id", sa.UUID(), nullable=False),
        sa.Column("stage_id", sa.UUID(), nullable=False),
        sa.Column("attempt_id", sa.UUID(), nullable=False),
        sa.Column("framework", sa.String(length=50), nullable=False),
        sa.Column("path", sa.String(length=1000), nullable=False),
        sa.Column("tests", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        _created_at(),
        fk("test_reports", "attempt_id", "stage_attempts"),
        fk("test_reports", "run_id", "runs"),
        fk("test_reports", "stage_id", "stages"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_test_reports")),
    )
    op.create_index(op.f("ix_test_reports_run_id"), "test_reports", ["run_id"], unique=False)
    op.create_table(
        "test_cases",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("report_id", sa.UUID(), nullable=False),
        sa.Column("project_id", sa.UUID(), nullable=False),
        sa.Column("suite", sa.String(length=500), nullable=False),
        sa.Column("classname", sa.String(length=500), nullable=False),
        sa.Column("name", sa.String(length=1000), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        fk("test_cases", "project_id", "projects"),
        fk("test_cases", "report_id", "test_reports"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_test_cases")),
    )
    op.create_index(
        "ix_test_cases_identity", "test_cases", ["project_id", "suite", "classname", "name"], unique=False
    )
    op.create_index(op.f("ix_test_cases_report_id"), "test_cases", ["report_id"], unique=False)
