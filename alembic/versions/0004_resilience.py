"""Resilience: dead letters say what kind of failure set the event aside (undecodable, or a handler
that kept failing on it) and which event and run it was; unpublished outbox rows are found by key
(the relay keeps one key's events in order across relays).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 23:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "dead_letters",
        sa.Column("kind", sa.String(length=32), server_default="undecodable", nullable=False),
    )
    op.add_column("dead_letters", sa.Column("event_id", sa.UUID(), nullable=True))
    op.add_column("dead_letters", sa.Column("event_type", sa.String(length=100), nullable=True))
    op.add_column("dead_letters", sa.Column("run_id", sa.UUID(), nullable=True))
    op.create_index("ix_dead_letters_run", "dead_letters", ["run_id"], unique=False)
    op.create_index(
        "ix_outbox_unpublished_key",
        "outbox",
        ["key", "id"],
        unique=False,
        postgresql_where=sa.text("published_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_outbox_unpublished_key", table_name="outbox", postgresql_where=sa.text("published_at IS NULL")
    )
    op.drop_index("ix_dead_letters_run", table_name="dead_letters")
    op.drop_column("dead_letters", "run_id")
    op.drop_column("dead_letters", "event_type")
    op.drop_column("dead_letters", "event_id")
    op.drop_column("dead_letters", "kind")
