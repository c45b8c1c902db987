"""Webhook intake finds its project by an index on (provider, lower(provider_repo))
(docs/decisions/0034)

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 12:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Hosts treat repository names case-insensitively, so intake matches lower(provider_repo):
    # without this index every delivery scanned the projects table.
    op.create_index(
        "ix_projects_provider_repo_lower", "projects", ["provider", sa.text("lower(provider_repo)")]
    )


def downgrade() -> None:
    op.drop_index("ix_projects_provider_repo_lower", table_name="projects")
