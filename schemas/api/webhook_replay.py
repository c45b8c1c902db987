"""Request and answer of `POST /projects/{id}/webhooks/replay` (the REST face of
`comet replay webhooks`; docs/decisions/0018)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PLAN_SHOWN = 100  # deliveries listed in a dry run's answer; the counts cover them all


class WebhookReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: str = Field(
        min_length=1,
        max_length=64,
        description="Start of the window: ISO 8601 (no zone means UTC) or how long ago (`2h`, `3d`).",
    )
    until: str | None = Field(default=None, min_length=1, max_length=64, description="End (default: now).")
    provider: Literal["github", "gitlab", "bitbucket"] | None = None
    outcome: Literal["accepted", "ignored", "rejected"] | None = Field(
        default=None, description="Only deliveries recorded with this outcome."
    )
    dry_run: bool = Field(default=False, description="Say what would happen to each; change nothing.")
    force: bool = Field(
        default=False, description="Start new runs even for deliveries that already produced theirs."
    )


class PlannedRun(BaseModel):
    ref: str
    sha: str
    because: str


class ReplayedDelivery(BaseModel):
    id: uuid.UUID = Field(description="Comet's id of the stored delivery.")
    provider: str
    delivery_id: str
    event: str
    received_at: datetime
    action: Literal["replay", "skip"]
    detail: str = Field(description="What happens to it and why, for people.")
    runs: list[PlannedRun] = []


class WebhookReplayAccepted(BaseModel):
    replay_id: uuid.UUID | None = Field(
        description="Named in the trigger of every run the replay starts (null for a dry run)."
    )
    dry_run: bool
    force: bool
    since: datetime
    until: datetime
    scanned: int
    replayed: int = Field(description="Deliveries re-driven (a dry run: that would be).")
    skipped: int
    runs: int = Field(description="Runs the re-driven deliveries start.")
    skipped_by: dict[str, int] = Field(description="Skipped deliveries by reason.")
    summary: str
    plan: list[ReplayedDelivery] = Field(
        default=[], description=f"A dry run's judgement of each delivery (the first {PLAN_SHOWN})."
    )
    plan_truncated: bool = False
