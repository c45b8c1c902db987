"""What a notification looks like on the wire (pure): the JSON body of a `webhook` integration
with its signature, and the incoming-webhook message (text + blocks) of a `slack` one.

The signature (CONTRACT §4): `X-Comet-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<body>">` under the integration's secret. The timestamp is the moment of the attempt, so a
receiver that refuses old timestamps refuses replays; `verify_signature` is the reference check.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid

import orjson

from schemas.notifications import (
    ApprovalRequestedNotice,
    DeploymentNotice,
    FlakyTestNotice,
    Notice,
    NotificationEvent,
    RunNotice,
)

SIGNATURE_HEADER = "X-Comet-Signature"
EVENT_HEADER = "X-Comet-Event"
DELIVERY_HEADER = "X-Comet-Delivery"
USER_AGENT = "Comet-Notifier/1"
DEFAULT_TOLERANCE_S = 300


def webhook_body(event: NotificationEvent, notice: Notice) -> bytes:
    return orjson.dumps(
        {
            "event": event,
            "event_id": str(notice.event_id),
            "occurred_at": notice.occurred_at.isoformat(),
            "project_id": str(notice.project_id),
            "project": notice.project,
            "data": notice.data.model_dump(mode="json"),
        }
    )


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Comet-Signature` value for `body` sent at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(
    secret: str, header: str, body: bytes, *, now: int, tolerance_s: int = DEFAULT_TOLERANCE_S
) -> bool:
    """What a receiver does: the header's timestamp is within `tolerance_s` of `now` and one of
    its `v1` signatures matches (compared in constant time)."""
    fields = [part.partition("=") for part in header.split(",")]
    stamps = [value for key, _, value in fields if key.strip() == "t"]
    signatures = [value for key, _, value in fields if key.strip() == "v1"]
    if len(stamps) != 1 or not stamps[0].isdigit() or not signatures:
        return False
    timestamp = int(stamps[0])
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).rpartition("v1=")[2]
    return any(hmac.compare_digest(expected, s.strip()) for s in signatures)


def request_headers(
    *, kind: str, event: str, delivery_id: uuid.UUID, secret: str | None, body: bytes, now: int
) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: event,
        DELIVERY_HEADER: str(delivery_id),
    }
    if kind == "webhook" and secret:
        headers[SIGNATURE_HEADER] = sign(secret, now, body)
    return headers


# -- slack ---------------------------------------------------------------------------------------
_ICONS = {"succeeded": ":white_check_mark:", "failed": ":x:", "cancelled": ":no_entry_sign:"}


def _short(sha: str | None) -> str:
    return sha[:8] if sha else "?"


def _branch(ref: str) -> str:
    return ref.removeprefix("refs/heads/").removeprefix("refs/tags/")


def _escape(text: str) -> str:
    """Slack's mrkdwn control characters (&, <, >) escaped: names cannot inject links or mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(event: NotificationEvent, notice: Notice) -> tuple[str, str]:
    """(plain fallback text, mrkdwn text with a link) for the message."""
    project = _escape(notice.project)
    data = notice.data
    if isinstance(data, RunNotice):
        icon = _ICONS.get(data.status, ":information_source:")
        what = f"{project}: run {data.status} on {_escape(_branch(data.ref))} @ {_short(data.sha)}"
        reason = f" — {_escape(data.failure_reason)}" if data.failure_reason else ""
        return f"{what}{reason}", f"{icon} *{what}*{reason}\n<{data.url}|View the run>"
    if isinstance(data, DeploymentNotice):
        verb = "deploying to" if event == "deployment.started" else f"deployment {data.status} on"
        what = f"{project}: {verb} {_escape(data.environment)} ({_escape(_branch(data.ref))} @ {_short(data.sha)})"
        icon = (
            ":rocket:" if event == "deployment.started" else _ICONS.get(data.status, ":information_source:")
        )
        rollback = " (rollback)" if data.rollback_of else ""
        return what + rollback, f"{icon} *{what}*{rollback}\n<{data.run_url}|View the run>"
    if isinstance(data, ApprovalRequestedNotice):
        where = f" to {_escape(data.environment)}" if data.environment else ""
        what = f"{project}: stage {_escape(data.stage)}{where} waits for approval ({_escape(_branch(data.ref))} @ {_short(data.sha)})"
        return what, f":raised_hand: *{what}*\n<{data.run_url}|Review the run>"
    assert isinstance(data, FlakyTestNotice)
    what = f"{project}: test {_escape(data.classname)}::{_escape(data.name)} is flaky (stage {_escape(data.stage)})"
    return what, f":warning: *{what}*\n<{data.run_url}|View the run>"


def slack_body(event: NotificationEvent, notice: Notice) -> bytes:
    """An incoming-webhook message: `text` (the notification's fallback) and one section block."""
    plain, markdown = slack_text(event, notice)
    return orjson.dumps(
        {
            "text": plain,
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": markdown}},
                {
                    "type": "context",
                    "elements": [{"type": "mrkdwn", "text": f"Comet · {event}"}],
                },
            ],
        }
    )


def body_for(kind: str, event: NotificationEvent, notice: Notice) -> bytes:
    return slack_body(event, notice) if kind == "slack" else webhook_body(event, notice)
