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

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # -- dead letters ------------------------------------------------------------------------
    # -- webhook replay -----------------------------------------------------------------------
    # `comet replay webhooks` without --project selects deliveries by when they were received
    # (in that order, keyset on (received_at, id)); with a project, the existing index serves.
    op.create_index("ix_webhook_deliveries_received", "webhook_deliveries", ["received_at", "id"])
    # -- retention and archives ---------------------------------------------------------------
    # -- backup and restore -------------------------------------------------------------------
    # -- rebuild ------------------------------------------------------------------------------
    pass


def downgrade() -> None:
    # Reverse order of upgrade().
    # -- webhook replay -----------------------------------------------------------------------
    op.drop_index("ix_webhook_deliveries_received", table_name="webhook_deliveries")
    pass
