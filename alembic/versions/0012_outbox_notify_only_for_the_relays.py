"""Outbox inserts wake other processes' relays only for rows no writer hands to Kafka itself
(docs/decisions/0033)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A row with `handoff_until` is being published by the process that wrote it; a row already
# published (history only) needs nobody. Only the rest — written by a process whose relay is not
# running — is worth waking every relay for. A failed hand-off wakes its own relay; a writer that
# died leaves its rows to the relays' sweep once the hand-off window has passed.
SELECTIVE = """
CREATE OR REPLACE FUNCTION comet_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM inserted WHERE published_at IS NULL AND handoff_until IS NULL) THEN
    PERFORM pg_notify('comet_outbox', '');
  END IF;
  RETURN NULL;
END $$;
"""

EVERY_INSERT = """
CREATE OR REPLACE FUNCTION comet_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('comet_outbox', '');
  RETURN NULL;
END $$;
"""


def upgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
    op.execute(SELECTIVE)
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox REFERENCING NEW TABLE AS inserted "
        "FOR EACH STATEMENT EXECUTE FUNCTION comet_outbox_notify()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
    op.execute(EVERY_INSERT)
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox "
        "FOR EACH STATEMENT EXECUTE FUNCTION comet_outbox_notify()"
    )
