"""Dead letters as admins read them (`/api/v1/dead-letters`)."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, Field

LetterStateName = Literal["waiting", "redriven", "discarded"]
LetterKindName = Literal["undecodable", "handler_failed"]


class DeadLetterOut(BaseModel):
    """A message a consumer set aside, with the reason and where it came from."""

    id: uuid.UUID
    state: LetterStateName
    consumer: str = Field(description="The consumer group that set it aside.")
    topic: str
    partition: int
    offset: int
    kind: LetterKindName = Field(
        description="`undecodable` (not a valid event today) or `handler_failed` (a poison event "
        "its consumer kept failing on)."
    )
    reason: str
    key: str | None = Field(description="The message key as text (undecodable bytes replaced).")
    event_id: uuid.UUID | None
    event_type: str | None
    run_id: uuid.UUID | None
    created_at: AwareDatetime
    redriven_at: AwareDatetime | None
    redriven_by: str | None
    redrive_count: int
    discarded_at: AwareDatetime | None
    discarded_by: str | None


class PayloadPreview(BaseModel):
    """The message value, shown safely."""

    size: int = Field(description="Bytes in the stored value.")
    truncated: bool = Field(description="Whether `text`/`base64` hold only the first 64 KiB.")
    event: dict[str, Any] | None = Field(
        description="The event as today's code decodes it (upcast to the current schema version); "
        "null when it does not decode."
    )
    decode_error: str | None = Field(description="Why it does not decode today (null: it does).")
    text: str | None = Field(description="The value as UTF-8 text (null when it is not UTF-8).")
    base64: str | None = Field(description="The value in base64, when it is not UTF-8 text.")


class DeadLetterDetail(DeadLetterOut):
    payload: PayloadPreview


class RedriveAccepted(BaseModel):
    id: uuid.UUID
    state: LetterStateName
    topic: str
    redriven_at: AwareDatetime
    redriven_by: str
