"""A stage's note: why it ended as it did when that is not its exit code alone (it succeeded
although its failing tests are all quarantined).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 01:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("stages", sa.Column("note", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("stages", "note")
