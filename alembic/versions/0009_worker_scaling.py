"""Worker scaling (issue 12)

Each part adds its own section below (one migration for the whole capability).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 03:15:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401  (used by the sections below)
from alembic import op  # noqa: F401

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    #  labels, queue signals.:-- labels and queues --
    _labels_upgrade()


def downgrade() -> None:
    # Reverse order of upgrade().
    # -- labels and queues --
    _labels_downgrade()


# -- labels and queues (docs/decisions/0026) -----------------------------------------------------
# A stage's `labels` travel with each of its attempts: a worker claims an attempt only when the
# attempt's labels are a subset of its own (`labels <@ worker_labels`). `<@` on jsonb has no index
# support (GIN indexes `@>`, not `<@`), so the claim narrows by pool and age on the queued rows
# (few, however large the history) and filters by labels there.
def _labels_upgrade() -> None:
    from sqlalchemy.dialects import postgresql

    op.add_column(
        "stage_attempts",
        sa.Column(
            "labels",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            server_default=sa.text("'{}'::jsonb"),
        ),
    )
    op.create_index(
        "ix_stage_attempts_queued_pool_age",
        "stage_attempts",
        ["pool", "queued_at"],
        postgresql_where=sa.text("status = 'queued'"),
    )


def _labels_downgrade() -> None:
    op.drop_index("ix_stage_attempts_queued_pool_age", table_name="stage_attempts")
    op.drop_column("stage_attempts", "labels")
