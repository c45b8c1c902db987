"""Personal API tokens: what a user asks for, and what they see (the token itself only once)."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.api.common import SHOWN_ONCE

TokenScope = Literal["read", "trigger", "admin"]
TOKEN_SCOPES: tuple[TokenScope, ...] = ("read", "trigger", "admin")


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, examples=["release script"])
    scopes: list[TokenScope] = Field(
        min_length=1,
        description="`read`: only GET requests; `trigger`: read, and trigger, cancel and retry runs; "
        "`admin`: everything you may do.",
        examples=[["trigger"]],
    )
    expires_in_days: int | None = Field(
        default=90, ge=1, le=366, description="Days until the token stops working; null: never."
    )


class TokenOut(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str = Field(description="The token's first characters, to recognise it.")
    scopes: list[TokenScope]
    created_at: AwareDatetime
    expires_at: AwareDatetime | None
    last_used_at: AwareDatetime | None


class TokenCreated(TokenOut):
    token: str | None = Field(
        description="Send as `Authorization: Bearer <token>`. Shown this once only: null when this "
        "is a replayed answer (`Idempotent-Replayed: true`); revoke that token and create another.",
        json_schema_extra={SHOWN_ONCE: True},
    )


class TokenList(BaseModel):
    data: list[TokenOut]
