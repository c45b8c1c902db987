"""The event log and its bookkeeping: outbox (every event Comet emits, kept as history), inbox
(events each consumer already applied), dead letters, and the audit log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, created_at_column, id_column


class OutboxEvent(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_unpublished", "id", postgresql_where=text("published_at IS NULL")),
        Index("ix_outbox_run", "run_id", "id"),
        Index("ix_outbox_unpublished_key", "key", "id", postgresql_where=text("published_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    event_type: Mapped[str] = mapped_column(String(100))
    topic: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(255))
    envelope: Mapped[dict[str, Any]] = mapped_column(JSONB)
    run_id: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime] = created_at_column()
    published_at: Mapped[datetime | None]
    # Until when the process that wrote the row is handing it to Kafka itself: relays leave it
    # alone until then (decision 0030), so an event is not published twice in the normal case.
    handoff_until: Mapped[datetime | None]


class InboxEntry(Base):
    __tablename__ = "inbox"

    consumer: Mapped[str] = mapped_column(String(255), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    processed_at: Mapped[datetime] = created_at_column()


class DeadLetter(Base):
    __tablename__ = "dead_letters"
    __table_args__ = (
        Index("ix_dead_letters_run", "run_id"),
        Index(
            "ix_dead_letters_waiting",
            "consumer",
            "kind",
            "created_at",
            postgresql_where=text("redriven_at IS NULL AND discarded_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = id_column()
    consumer: Mapped[str] = mapped_column(String(255))
    topic: Mapped[str] = mapped_column(String(255))
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    key: Mapped[bytes | None] = mapped_column(LargeBinary)
    value: Mapped[bytes | None] = mapped_column(LargeBinary)
    reason: Mapped[str] = mapped_column(Text)
    # "undecodable" (not a valid event) or "handler_failed" (a poison event its consumer kept
    # failing on); for the latter, which event and run it was.
    kind: Mapped[str] = mapped_column(String(32), server_default="undecodable")
    event_id: Mapped[uuid.UUID | None]
    event_type: Mapped[str | None] = mapped_column(String(100))
    run_id: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime] = created_at_column()
    # A letter is waiting, redriven (re-published to its topic: `comet dlq redrive`) or discarded
    # (kept, with who and when, but no longer counted as waiting).
    redriven_at: Mapped[datetime | None]
    redriven_by: Mapped[str | None] = mapped_column(String(255))
    redrive_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    discarded_at: Mapped[datetime | None]
    discarded_by: Mapped[str | None] = mapped_column(String(255))


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[uuid.UUID] = id_column()
    at: Mapped[datetime] = created_at_column()
    actor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(100), index=True)
    target_type: Mapped[str | None] = mapped_column(String(50))
    target_id: Mapped[str | None] = mapped_column(String(100))
    project_id: Mapped[uuid.UUID | None]
    client_ip: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(100))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
