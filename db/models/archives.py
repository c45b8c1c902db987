"""Retention and disaster recovery bookkeeping: the ledger of event-history archives written to
`COMET_ARCHIVE_DIR`, and the restore points `comet restore` leaves for `comet replay catch-up`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, created_at_column, id_column


class EventArchive(Base):
    """One compressed JSON-lines file of outbox rows moved out of Postgres (ids first..last)."""

    __tablename__ = "event_archives"

    id: Mapped[uuid.UUID] = id_column()
    file_name: Mapped[str] = mapped_column(String(255), unique=True)
    first_outbox_id: Mapped[int] = mapped_column(BigInteger)
    last_outbox_id: Mapped[int] = mapped_column(BigInteger)
    events: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    oldest_at: Mapped[datetime]
    newest_at: Mapped[datetime]
    created_at: Mapped[datetime] = created_at_column()


class RestorePoint(Base):
    """A backup restored into this database: its manifest (with the Kafka offsets at backup time)
    and when `comet replay catch-up` brought the database up to date from them."""

    __tablename__ = "restore_points"

    id: Mapped[uuid.UUID] = id_column()
    backup_id: Mapped[str] = mapped_column(String(64))
    manifest: Mapped[dict[str, Any]] = mapped_column(JSONB)
    restored_at: Mapped[datetime] = created_at_column()
    caught_up_at: Mapped[datetime | None]
    events_applied: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
