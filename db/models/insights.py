"""What `comet analytics` writes (docs/decisions/0025): one row per insight fact, which the API's
insights aggregate over a window. Nothing else writes it; the API only reads it."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Float, Index, Integer, PrimaryKeyConstraint, String, func
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base


class InsightFact(Base):
    """A finished run, a timed stage, a finished deployment or an attempt's test counts, keyed by
    its kind and the id of what it is about (upserted: a replayed event rewrites the same row)."""

    __tablename__ = "insight_facts"
    __table_args__ = (
        PrimaryKeyConstraint("kind", "member_id"),
        Index("ix_insight_facts_window", "project_id", "kind", "at"),
    )

    kind: Mapped[str] = mapped_column(String(16))
    member_id: Mapped[uuid.UUID]
    # Not a foreign key: analytics lags behind the live system and must not fail on a project
    # deleted meanwhile (the API reads facts by project, so stale ones are never shown).
    project_id: Mapped[uuid.UUID]
    at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(32))
    environment: Mapped[str | None] = mapped_column(String(100))
    stage: Mapped[str | None] = mapped_column(String(300))
    value_s: Mapped[float | None] = mapped_column(Float)
    wait_s: Mapped[float | None] = mapped_column(Float)
    tests_total: Mapped[int] = mapped_column(Integer, default=0)
    tests_flaky: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
