"""Public shapes of integrations: provider settings such as commit-status reporting."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl


class CommitStatusConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_url: HttpUrl | None = Field(
        default=None,
        description="The host's API base URL (GitHub Enterprise, self-managed GitLab); default: the public host.",
    )


class IntegrationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["commit_status"] = Field(description="`commit_status`: report run states on commits.")
    config: CommitStatusConfig = Field(default_factory=CommitStatusConfig)
    token: str = Field(
        min_length=1, max_length=4096, description="The API token used; stored encrypted, never shown."
    )


class IntegrationOut(BaseModel):
    id: uuid.UUID
    kind: str
    config: dict[str, Any]
    enabled: bool
    created_at: datetime


class IntegrationList(BaseModel):
    data: list[IntegrationOut]
    next_cursor: str | None = None


class CommitStatusOut(BaseModel):
    provider: str
    state: str
    status: Literal["pending", "delivered", "failed", "superseded"]
    attempts: int
    http_status: int | None
    error: str | None
    created_at: datetime
    delivered_at: datetime | None


class CommitStatusList(BaseModel):
    data: list[CommitStatusOut]
    next_cursor: str | None = None
