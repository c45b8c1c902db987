"""`webhook.received` version 2 carries the delivery's contents; a version-1 event still decodes,
upcast to version 2 with none of them (its row is what the orchestrator reads)."""

from __future__ import annotations

import base64
import uuid

import orjson

from events.envelope import decode, new_envelope
from schemas.events import WebhookReceived

ROW = "0195a3c4-0000-7000-8000-000000000001"
PROJECT = "0195a3c4-0000-7000-8000-000000000002"


def test_a_version_1_webhook_received_is_upcast_to_version_2_without_contents() -> None:
    raw = orjson.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "type": "webhook.received",
            "schema_version": 1,
            "occurred_at": "2026-11-01T10:00:00+00:00",
            "key": PROJECT,
            "correlation_id": "c",
            "payload": {"delivery_row_id": ROW, "provider": "github", "project_id": PROJECT},
        }
    )
    payload = decode(raw).typed()
    assert isinstance(payload, WebhookReceived)
    assert payload.delivery_row_id == uuid.UUID(ROW)
    assert (payload.body, payload.delivery_id, payload.headers) == (None, None, {})


def test_a_version_2_webhook_received_carries_the_body_and_headers() -> None:
    body = b'{"ref": "refs/heads/main"}'
    sent = new_envelope(
        WebhookReceived(
            delivery_row_id=uuid.UUID(ROW),
            provider="github",
            project_id=uuid.UUID(PROJECT),
            delivery_id="d-1",
            event="push",
            headers={"x-github-event": "push"},
            body=base64.b64encode(body).decode(),
        ),
        key=PROJECT,
    )
    received = decode(sent.encode())
    assert received.schema_version == 2
    payload = received.typed()
    assert isinstance(payload, WebhookReceived)
    assert payload.body is not None
    assert base64.b64decode(payload.body) == body
    assert payload.headers == {"x-github-event": "push"}
