"""Where a database rebuilt from another's event history stands (`comet replay rebuild`): which
source it was rebuilt from and the last outbox row applied, so a second rebuild continues from
there (and, with nothing new, changes nothing) instead of refusing a non-empty target."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, created_at_column


class RebuildProgress(Base):
    __tablename__ = "rebuild_progress"

    # The source database's name and the id of its first event (unique to that history).
    source: Mapped[str] = mapped_column(String(300), primary_key=True)
    last_outbox_id: Mapped[int] = mapped_column(BigInteger)
    events_applied: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = created_at_column()
