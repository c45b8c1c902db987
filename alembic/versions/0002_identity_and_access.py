"""Identity and access: a GIN index to find spent refresh tokens in their family, how each login
session was opened, and a check that API-token scopes are known.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 23:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_auth_sessions_previous_token_hashes",
        "auth_sessions",
        ["previous_token_hashes"],
        unique=False,
        postgresql_using="gin",
    )
    op.add_column(
        "auth_sessions",
        sa.Column("method", sa.String(length=32), server_default="password", nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_api_tokens_scopes_valid"),
        "api_tokens",
        "scopes <@ ARRAY['read', 'trigger', 'admin']::varchar[] AND cardinality(scopes) > 0",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_api_tokens_scopes_valid"), "api_tokens", type_="check")
    op.drop_column("auth_sessions", "method")
    op.drop_index(
        "ix_auth_sessions_previous_token_hashes", table_name="auth_sessions", postgresql_using="gin"
    )
