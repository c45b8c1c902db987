"""Public shapes of integrations: commit-status reporting to the Git host, and outbound
notifications (`webhook`, `slack`) with their deliveries and every attempt."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from schemas.api.common import SHOWN_ONCE
from schemas.notifications import NotificationEvent


class CommitStatusConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_url: HttpUrl | None = Field(
        default=None,
        description="The host's API base URL (GitHub Enterprise, self-managed GitLab); default: the public host.",
    )


class IntegrationCreate(BaseModel):
    """One body for every kind (the fields of another kind are refused by name): `commit_status`
    takes `token` (and `config`), `webhook` and `slack` take `url` and `events`."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["commit_status", "webhook", "slack"] = Field(
        description="`commit_status`: report run states on commits; `webhook`: a signed JSON POST per "
        "notification; `slack`: a Slack incoming webhook."
    )
    config: CommitStatusConfig | None = Field(default=None, description="`commit_status` only.")
    token: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="`commit_status` (required): the API token used; stored encrypted, never shown.",
    )
    url: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="`webhook` / `slack` (required): where to POST — an https URL on a public address "
        "(private, loopback or plain http only for hosts COMET_OUTBOUND_ALLOW names). Stored encrypted.",
    )
    events: list[NotificationEvent] | None = Field(
        default=None,
        min_length=1,
        max_length=6,
        description="`webhook` / `slack` (required): the events to send; others are not sent.",
    )

    def problems(self) -> list[tuple[str, str]]:
        """The fields this kind needs but lacks, or takes but does not use (`body.<field>`)."""
        needed = ("token",) if self.kind == "commit_status" else ("url", "events")
        unused = ("url", "events") if self.kind == "commit_status" else ("token", "config")
        found = [(f"body.{f}", "is required") for f in needed if getattr(self, f) is None]
        found += [
            (f"body.{f}", f"is not used by kind {self.kind}") for f in unused if getattr(self, f) is not None
        ]
        return found


class IntegrationOut(BaseModel):
    id: uuid.UUID
    kind: str
    config: dict[str, Any]
    enabled: bool
    created_at: datetime
    url: str | None = Field(
        default=None, description="Notifications: the target, without its query (Slack: the host only)."
    )
    events: list[str] | None = Field(default=None, description="Notifications: the events sent.")
    secret: str | None = Field(
        default=None,
        json_schema_extra={SHOWN_ONCE: True},
        description="`webhook` only, shown once at creation: the key of `X-Comet-Signature: "
        't=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.',
    )


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


class NotificationAttemptOut(BaseModel):
    number: int
    started_at: datetime
    duration_ms: int
    http_status: int | None = Field(description="The receiver's answer; null when no answer came.")
    error: str | None = Field(description="Why it was not delivered; null for a delivered attempt.")


class NotificationDeliveryOut(BaseModel):
    id: uuid.UUID = Field(description="Sent as `X-Comet-Delivery` (the same on every attempt).")
    event: str
    source_event_id: uuid.UUID = Field(description="The Comet event the notification came from.")
    status: Literal["pending", "delivered", "failed"]
    created_at: datetime
    delivered_at: datetime | None
    next_attempt_at: datetime | None = Field(description="When it is tried again (pending only).")
    attempts: list[NotificationAttemptOut]


class NotificationDeliveryList(BaseModel):
    data: list[NotificationDeliveryOut]
    next_cursor: str | None = None
