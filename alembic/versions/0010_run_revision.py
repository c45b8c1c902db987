"""A run's revision: the number of its `run.changed` events; an outbox row's hand-off time
(docs/decisions/0030)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 06:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Runs that exist start at 0: their next `run.changed` is number 1, which readers that kept
    # no revision for them (it was not in the events before) take as the next one.
    op.add_column("runs", sa.Column("revision", sa.Integer(), nullable=False, server_default=sa.text("0")))
    # `comet analytics` looks for recently finished runs it has no fact for (its repair sweep).
    op.create_index(
        "ix_runs_finished_at", "runs", ["finished_at"], postgresql_where=sa.text("finished_at IS NOT NULL")
    )

    # Relays leave a row alone while the process that wrote it hands it to Kafka (decision 0030).
    op.add_column("outbox", sa.Column("handoff_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("outbox", "handoff_until")
    op.drop_index("ix_runs_finished_at", table_name="runs")
    op.drop_column("runs", "revision")
