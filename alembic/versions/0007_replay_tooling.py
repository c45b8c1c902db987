"""Event replay tooling (issue 11): dead-letter handling, replays, retention and backups.

Each part of the tooling adds its own section below (one migration for the whole capability).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 03:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401  (used by the sections below)
from alembic import op  # noqa: F401
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # -- dead letters ------------------------------------------------------------------------
    # Who redrove or discarded a letter (an admin's e-mail, or `cli:<login>`), when, and how often
    # it was redriven; a discarded letter is kept, never erased.
    op.add_column("dead_letters", sa.Column("redriven_by", sa.String(length=255), nullable=True))
    op.add_column(
        "dead_letters", sa.Column("redrive_count", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column("dead_letters", sa.Column("discarded_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("dead_letters", sa.Column("discarded_by", sa.String(length=255), nullable=True))
    op.create_index(
        "ix_dead_letters_waiting",
        "dead_letters",
        ["consumer", "kind", "created_at"],
        postgresql_where=sa.text("redriven_at IS NULL AND discarded_at IS NULL"),
    )
    # -- webhook replay -----------------------------------------------------------------------
    # `comet replay webhooks` without --project selects deliveries by when they were received
    # (in that order, keyset on (received_at, id)); with a project, the existing index serves.
    op.create_index("ix_webhook_deliveries_received", "webhook_deliveries", ["received_at", "id"])
    # -- retention and archives ---------------------------------------------------------------
    op.create_table(
        "event_archives",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("first_outbox_id", sa.BigInteger(), nullable=False),
        sa.Column("last_outbox_id", sa.BigInteger(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("oldest_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("newest_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_archives")),
        sa.UniqueConstraint("file_name", name=op.f("uq_event_archives_file_name")),
    )
    # -- backup and restore -------------------------------------------------------------------
    op.create_table(
        "restore_points",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("backup_id", sa.String(length=64), nullable=False),
        sa.Column("manifest", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("restored_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("caught_up_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("events_applied", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_restore_points")),
    )
    # -- rebuild ------------------------------------------------------------------------------
    op.create_table(
        "rebuild_progress",
        sa.Column("source", sa.String(length=300), nullable=False),
        sa.Column("last_outbox_id", sa.BigInteger(), nullable=False),
        sa.Column("events_applied", sa.BigInteger(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_rebuild_progress")),
    )
    pass


def downgrade() -> None:
    # Reverse order of upgrade().
    # -- rebuild ------------------------------------------------------------------------------
    op.drop_table("rebuild_progress")
    # -- backup and restore -------------------------------------------------------------------
    op.drop_table("restore_points")
    # -- retention and archives ---------------------------------------------------------------
    op.drop_table("event_archives")
    # -- webhook replay -----------------------------------------------------------------------
    op.drop_index("ix_webhook_deliveries_received", table_name="webhook_deliveries")
    # -- dead letters ------------------------------------------------------------------------
    op.drop_index("ix_dead_letters_waiting", table_name="dead_letters")
    op.drop_column("dead_letters", "discarded_by")
    op.drop_column("dead_letters", "discarded_at")
    op.drop_column("dead_letters", "redrive_count")
    op.drop_column("dead_letters", "redriven_by")
    pass
