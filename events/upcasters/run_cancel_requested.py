"""`run.cancel_requested` 1 → 2: version 2 says who asked for the cancel in a field of its own
(`source`: "user" or "concurrency_group"); version 1 only said so in the prose of `reason`, which
the orchestrator writes as "cancelled by a newer run in concurrency group '<group>' (#<n>)"."""

from __future__ import annotations

from events.upcasting import UPCASTERS, Payload

GROUP_REASON_PREFIX = "cancelled by a newer run in concurrency group "


@UPCASTERS.register("run.cancel_requested", from_version=1)
def add_source(payload: Payload) -> Payload:
    reason = payload.get("reason")
    by_group = (
        payload.get("actor_id") is None and isinstance(reason, str) and reason.startswith(GROUP_REASON_PREFIX)
    )
    return {**payload, "source": "concurrency_group" if by_group else "user"}
