"""`webhook.received` 1 → 2: version 2 carries the delivery row's contents (for disaster recovery,
docs/decisions/0020); a version-1 event has none of them, so they are absent (None / empty) and
the delivery's row is what the orchestrator reads, as before."""

from __future__ import annotations

from events.upcasting import UPCASTERS, Payload


@UPCASTERS.register("webhook.received", from_version=1)
def add_delivery_contents(payload: Payload) -> Payload:
    return {
        "delivery_id": None,
        "event": None,
        "action": None,
        "headers": {},
        "body": None,
        "received_at": None,
        **payload,
    }
