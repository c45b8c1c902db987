"""Outbound notifications (docs/decisions/0024): each delivery of a notification to a `webhook`
or `slack` integration with its rendered body, every attempt to send it, and the tests already
announced as flaky (so a test is announced once per project)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Identity, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, created_at_column, id_column


class NotificationDelivery(Base):
    """One notification addressed to one integration: pending (due at `next_attempt_at`),
    delivered, or failed after its last attempt. The body is rendered once, so every attempt
    sends the same bytes (only the signature's timestamp changes)."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        Index("ix_notification_deliveries_integration", "integration_id", "id"),
        Index(
            "ix_notification_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[uuid.UUID] = id_column()
    integration_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("integrations.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID]
    event: Mapped[str] = mapped_column(String(40))
    source_event_id: Mapped[uuid.UUID]
    body: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = created_at_column()
    last_http_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()
    delivered_at: Mapped[datetime | None]


class NotificationAttempt(Base):
    """One try at sending a delivery: when, how long it took, the receiver's status or the error."""

    __tablename__ = "notification_attempts"
    __table_args__ = (Index("ix_notification_attempts_delivery", "delivery_id", "number"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("notification_deliveries.id", ondelete="CASCADE")
    )
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    duration_ms: Mapped[int] = mapped_column(Integer)
    http_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)


class FlakyNotice(Base):
    """A test of a project that was announced as flaky (`test.flaky` is sent once per test)."""

    __tablename__ = "flaky_notices"

    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    test_key: Mapped[str] = mapped_column(String(40), primary_key=True)
    run_id: Mapped[uuid.UUID]
    created_at: Mapped[datetime] = created_at_column()
