"""What happens to a verified delivery at the door: which of its events could start a run, and
why the others are only recorded. Pure; the route persists the outcome."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from api.webhooks.events import WebhookEvent


def why_not_run(event: WebhookEvent) -> str | None:
    """None when the event is worth asking the pipeline's `on:` filters; else the reason."""
    if event.kind == "ping":
        return "ping: the webhook is set up"
    if event.kind == "other":
        action = f" ({event.action})" if event.action else ""
        return f"{event.event}{action} events are recorded, not run"
    if event.deleted:
        return f"{'tag' if event.kind == 'tag' else 'branch'} deletion"
    if event.kind == "pull_request" and event.action == "closed":
        return "pull request closed"
    if event.sha is None:
        return "the event names no commit"
    return None


@dataclass(frozen=True, slots=True)
class Intake:
    outcome: str  # "accepted" | "ignored"
    reason: str | None


def intake(events: Sequence[WebhookEvent]) -> Intake:
    reasons = [why_not_run(e) for e in events]
    if any(r is None for r in reasons):
        return Intake("accepted", None)
    return Intake("ignored", "; ".join(sorted({r for r in reasons if r})) or "nothing to run")
