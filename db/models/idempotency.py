"""Idempotency keys: the first successful answer to a creating POST, kept for 24 hours so a retry
with the same `Idempotency-Key` gets that answer again instead of creating a second resource.

A record is written in the same transaction as the resource it answers for (see
`api/idempotency.py`), so either both exist or neither does.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Index, SmallInteger, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, created_at_column, id_column


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("scope", "key"),
        # The opportunistic purge takes the oldest expired rows first.
        Index("ix_idempotency_keys_expires_at", "expires_at"),
    )

    id: Mapped[uuid.UUID] = id_column()
    # Who sent it: `user:<id>`, or `user:<id>:token:<id>` for a personal API token. The same key
    # from two principals names two different requests.
    scope: Mapped[str] = mapped_column(String(120))
    key: Mapped[str] = mapped_column(String(255))
    # SHA-256 (hex) of the method, the path and the canonical JSON body.
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(SmallInteger)
    response_body: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # Only the headers worth replaying (`Location`).
    response_headers: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = created_at_column()
    expires_at: Mapped[datetime]
