"""Audit log entries as admins read them."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    at: AwareDatetime
    action: str
    actor_id: uuid.UUID | None
    target_type: str | None
    target_id: str | None
    project_id: uuid.UUID | None
    client_ip: str | None
    request_id: str | None
    details: dict[str, Any]
