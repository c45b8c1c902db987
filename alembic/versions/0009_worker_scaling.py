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
    pass


def downgrade() -> None:
    # Reverse order of upgrade().
    pass
