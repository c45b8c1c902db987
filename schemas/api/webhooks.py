"""Public shapes of webhook intake and of deliveries as data."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

Outcome = Literal["accepted", "duplicate", "rejected", "ignored"]


class DeliveryAck(BaseModel):
    delivery_id: str = Field(description="The host's delivery id.")
    id: uuid.UUID = Field(description="Comet's id of the stored delivery.")
    outcome: Outcome
    reason: str | None = None
    duplicate: bool = False


class DeliveryOut(BaseModel):
    id: uuid.UUID
    provider: str
    event: str
    action: str | None
    delivery_id: str
    received_at: datetime
    outcome: Outcome
    reason: str | None
    run_id: uuid.UUID | None
    redeliveries: int


class DeliveryList(BaseModel):
    data: list[DeliveryOut]
    next_cursor: str | None = None


class RedeliverAccepted(BaseModel):
    id: uuid.UUID
    status: Literal["redelivering", "already_delivered"]
    run_id: uuid.UUID | None = None


class SecretRotated(BaseModel):
    webhook_secret: str = Field(description="The new secret. Shown this once only.")
    previous_valid_until: datetime
