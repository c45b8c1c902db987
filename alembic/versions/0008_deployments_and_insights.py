"""Deployments, approvals, rollback, outbound notifications and insights (issue 13).

Each part adds its own section below (one migration for the whole capability).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 03:15:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401  (used by the sections below)
from alembic import op  # noqa: F401
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # -- environments and deployments --
    _deployments_upgrade()
    # -- outbound notifications --
    _notifications_upgrade()
    # -- insights --
    _insights_upgrade()


def downgrade() -> None:
    # Reverse order of upgrade().
    # -- insights --
    _insights_downgrade()
    # -- outbound notifications --
    _notifications_downgrade()
    # -- environments and deployments --
    _deployments_downgrade()


# -- environments and deployments (docs/decisions/0027) ----------------------------------------
def _deployments_upgrade() -> None:
    op.create_table(
        "environments",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("project_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("required_approvals", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("allow_self_approval", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "branches",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("wait_timer_s", sa.Float(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "required_approvals BETWEEN 0 AND 5", name=op.f("ck_environments_required_approvals_range")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_environments_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_environments")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_environments_project_id_name")),
    )
    # The deployments table of migration 0001 was never written: it becomes the projection of the
    # deployment rows `run.changed` carries (one row per time a stage deploys).
    op.drop_constraint("uq_deployments_stage_id", "deployments", type_="unique")
    op.drop_constraint("fk_deployments_approved_by_users", "deployments", type_="foreignkey")
    op.drop_column("deployments", "approved_by")
    op.drop_column("deployments", "approved_at")
    op.drop_column("deployments", "approval_required")
    op.add_column("deployments", sa.Column("stage", sa.String(length=300), server_default="", nullable=False))
    op.add_column(
        "deployments", sa.Column("number", sa.Integer(), server_default=sa.text("1"), nullable=False)
    )
    op.add_column("deployments", sa.Column("reason", sa.Text(), nullable=True))
    op.add_column("deployments", sa.Column("url", sa.Text(), nullable=True))
    op.add_column("deployments", sa.Column("rollback_of", sa.UUID(), nullable=True))
    op.add_column("deployments", sa.Column("triggered_by", sa.UUID(), nullable=True))
    op.add_column(
        "deployments",
        sa.Column(
            "approvals",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column(
        "deployments",
        sa.Column("required_approvals", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "deployments",
        sa.Column("allow_self_approval", sa.Boolean(), server_default=sa.text("true"), nullable=False),
    )
    for column in ("ready_at", "wait_until", "expires_at", "started_at", "updated_at"):
        op.add_column("deployments", sa.Column(column, sa.DateTime(timezone=True), nullable=True))
    op.create_foreign_key(
        op.f("fk_deployments_triggered_by_users"),
        "deployments",
        "users",
        ["triggered_by"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_check_constraint(
        op.f("ck_deployments_status_valid"),
        "deployments",
        "status IN ('waiting', 'queued', 'in_progress', 'succeeded', 'failed', 'cancelled', 'rejected')",
    )
    op.create_index("ix_deployments_run", "deployments", ["run_id"])
    op.create_index("ix_deployments_stage", "deployments", ["stage_id"])
    op.create_index("ix_deployments_environment", "deployments", ["project_id", "environment", "status"])
    op.create_index("ix_deployments_listing", "deployments", ["project_id", "created_at", "id"])


def _deployments_downgrade() -> None:
    op.drop_index("ix_deployments_listing", table_name="deployments")
    op.drop_index("ix_deployments_environment", table_name="deployments")
    op.drop_index("ix_deployments_stage", table_name="deployments")
    op.drop_index("ix_deployments_run", table_name="deployments")
    op.drop_constraint(op.f("ck_deployments_status_valid"), "deployments", type_="check")
    op.drop_constraint(op.f("fk_deployments_triggered_by_users"), "deployments", type_="foreignkey")
    # Rows of the new shape (several per stage) do not fit the old one: they go with it.
    op.execute("DELETE FROM deployments")
    for column in (
        "updated_at",
        "started_at",
        "expires_at",
        "wait_until",
        "ready_at",
        "allow_self_approval",
        "required_approvals",
        "approvals",
        "triggered_by",
        "rollback_of",
        "url",
        "reason",
        "number",
        "stage",
    ):
        op.drop_column("deployments", column)
    op.add_column("deployments", sa.Column("approval_required", sa.Boolean(), nullable=False))
    op.add_column("deployments", sa.Column("approved_by", sa.UUID(), nullable=True))
    op.add_column("deployments", sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True))
    op.create_foreign_key(
        "fk_deployments_approved_by_users",
        "deployments",
        "users",
        ["approved_by"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_unique_constraint("uq_deployments_stage_id", "deployments", ["stage_id"])
    op.drop_table("environments")


# -- outbound notifications (docs/decisions/0024) ------------------------------------------------
def _notifications_upgrade() -> None:
    op.create_table(
        "notification_deliveries",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("integration_id", sa.UUID(), nullable=False),
        sa.Column("project_id", sa.UUID(), nullable=False),
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("source_event_id", sa.UUID(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "next_attempt_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("last_http_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["integration_id"],
            ["integrations.id"],
            name=op.f("fk_notification_deliveries_integration_id_integrations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_deliveries")),
    )
    op.create_index(
        "ix_notification_deliveries_integration", "notification_deliveries", ["integration_id", "id"]
    )
    op.create_index(
        "ix_notification_deliveries_due",
        "notification_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "notification_attempts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("delivery_id", sa.UUID(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["notification_deliveries.id"],
            name=op.f("fk_notification_attempts_delivery_id_notification_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_attempts")),
    )
    op.create_index("ix_notification_attempts_delivery", "notification_attempts", ["delivery_id", "number"])
    op.create_table(
        "flaky_notices",
        sa.Column("project_id", sa.UUID(), nullable=False),
        sa.Column("test_key", sa.String(length=40), nullable=False),
        sa.Column("run_id", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_flaky_notices_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", "test_key", name=op.f("pk_flaky_notices")),
    )


def _notifications_downgrade() -> None:
    op.drop_table("flaky_notices")
    op.drop_index("ix_notification_attempts_delivery", table_name="notification_attempts")
    op.drop_table("notification_attempts")
    op.drop_index("ix_notification_deliveries_due", table_name="notification_deliveries")
    op.drop_index("ix_notification_deliveries_integration", table_name="notification_deliveries")
    op.drop_table("notification_deliveries")


# -- insights (docs/decisions/0025) --------------------------------------------------------------
def _insights_upgrade() -> None:
    op.create_table(
        "insight_facts",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("member_id", sa.UUID(), nullable=False),
        sa.Column("project_id", sa.UUID(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("environment", sa.String(length=100), nullable=True),
        sa.Column("stage", sa.String(length=300), nullable=True),
        sa.Column("value_s", sa.Float(), nullable=True),
        sa.Column("wait_s", sa.Float(), nullable=True),
        sa.Column("tests_total", sa.Integer(), nullable=False),
        sa.Column("tests_flaky", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("kind", "member_id", name=op.f("pk_insight_facts")),
    )
    op.create_index("ix_insight_facts_window", "insight_facts", ["project_id", "kind", "at"])


def _insights_downgrade() -> None:
    op.drop_index("ix_insight_facts_window", table_name="insight_facts")
    op.drop_table("insight_facts")
