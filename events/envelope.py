"""The one envelope every Comet event travels in, and the one way to encode and decode it.

Decoding never raises anything but `UndecodableEvent`, whose message says what was wrong; the
consumer wrapper sends such messages to the dead-letter topic with that reason. An event written
at an older `schema_version` is upcast (events/upcasting.py) before its payload is validated, so
what `decode()` returns is always in today's shape.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

import events.upcasters  # noqa: F401  (registers every upcaster in UPCASTERS)
from events.upcasting import UPCASTERS, UpcastError
from schemas.events import EVENT_MODELS, EventPayload
from schemas.ids import uuid7


class UndecodableEventError(Exception):
    """A message that is not a valid Comet event (bad JSON, unknown type, invalid payload)."""


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: uuid.UUID
    type: str
    schema_version: int = Field(default=1, ge=1)
    occurred_at: datetime
    key: str
    correlation_id: str
    causation_id: str | None = None
    payload: dict[str, Any]

    def typed(self) -> EventPayload:
        """The payload as its registered model (validated when the envelope was decoded). An
        envelope built from stored JSON without `decode()` is upcast here too."""
        model = EVENT_MODELS[self.type]
        payload = self.payload
        if self.schema_version < model.schema_version():
            payload = UPCASTERS.upcast(self.type, self.schema_version, model.schema_version(), payload)
        return model.model_validate(payload)

    def encode(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))


def new_envelope(
    payload: EventPayload,
    *,
    key: str,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    occurred_at: datetime | None = None,
) -> Envelope:
    """Wrap `payload` in a fresh envelope (UUIDv7 id; the correlation id defaults to the event's own)."""
    event_id = uuid7()
    return Envelope(
        event_id=event_id,
        type=payload.event_type(),
        schema_version=payload.schema_version(),
        occurred_at=occurred_at or datetime.now(UTC),
        key=key,
        correlation_id=correlation_id or str(event_id),
        causation_id=causation_id,
        payload=payload.model_dump(mode="json"),
    )


def decode(raw: bytes | None) -> Envelope:
    """Parse and validate a Kafka message value; any failure is an `UndecodableEventError`."""
    if raw is None:
        raise UndecodableEventError("message has no value")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UndecodableEventError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UndecodableEventError("not a JSON object")
    try:
        envelope = Envelope.model_validate(data)
    except ValidationError as exc:
        raise UndecodableEventError(f"invalid envelope: {_first_error(exc)}") from None
    model = EVENT_MODELS.get(envelope.type)
    if model is None:
        raise UndecodableEventError(f"unknown event type {envelope.type!r}")
    if envelope.schema_version > model.schema_version():
        raise UndecodableEventError(
            f"{envelope.type} schema_version {envelope.schema_version} is newer than this "
            f"process understands ({model.schema_version()})"
        )
    payload = envelope.payload
    if envelope.schema_version < model.schema_version():
        try:
            payload = UPCASTERS.upcast(
                envelope.type, envelope.schema_version, model.schema_version(), payload
            )
        except UpcastError as exc:
            raise UndecodableEventError(str(exc)) from None
    try:
        model.model_validate(payload)
    except ValidationError as exc:
        raise UndecodableEventError(f"invalid {envelope.type} payload: {_first_error(exc)}") from None
    if payload is envelope.payload:
        return envelope
    return envelope.model_copy(update={"payload": payload, "schema_version": model.schema_version()})


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "(root)"
    return f"{where}: {err['msg']}"
