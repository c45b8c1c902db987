"""Users as the API shows them (never with a password hash)."""

from __future__ import annotations

import uuid

from pydantic import AwareDatetime, BaseModel, ConfigDict


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    display_name: str | None
    is_admin: bool
    is_active: bool
    created_at: AwareDatetime
    last_login_at: AwareDatetime | None
