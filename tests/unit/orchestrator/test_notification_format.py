"""Notifications on the wire: a webhook's JSON body and its replay-proof signature, a Slack
incoming-webhook message (text + blocks)."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime

from orchestrator.notification_format import (
    request_headers,
    sign,
    slack_body,
    verify_signature,
    webhook_body,
)
from schemas.notifications import Notice, RunNotice

AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
RUN = uuid.UUID("01900000-0000-7000-8000-000000000001")


def _failed_run(project: str = "shop", reason: str | None = "stage 'unit' failed") -> Notice:
    return Notice(
        events=("run.failed", "run.finished"),
        event_id=uuid.UUID("01900000-0000-7000-8000-0000000000ee"),
        occurred_at=AT,
        project_id=uuid.UUID("01900000-0000-7000-8000-0000000000aa"),
        project=project,
        data=RunNotice(
            run_id=RUN,
            status="failed",
            previous="running",
            ref="refs/heads/main",
            sha="a" * 40,
            pipeline="ci",
            trigger="webhook",
            failure_reason=reason,
            created_at=AT,
            finished_at=AT,
            url=f"https://ci.example.com/api/v1/runs/{RUN}",
        ),
    )


def test_the_signature_is_an_hmac_of_the_timestamp_and_the_body() -> None:
    body = b'{"event":"run.failed"}'
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("s3cret", 1700000000, body) == f"t=1700000000,v1={expected}"


def test_a_receiver_accepts_a_fresh_signature_and_refuses_tampering_replays_and_other_keys() -> None:
    body = webhook_body("run.failed", _failed_run())
    header = sign("s3cret", 1700000000, body)
    assert verify_signature("s3cret", header, body, now=1700000100)
    assert not verify_signature("s3cret", header, body + b" ", now=1700000100)
    assert not verify_signature("s3cret", header, body, now=1700000000 + 301), "a replay is refused"
    assert not verify_signature("other", header, body, now=1700000100)
    assert not verify_signature("s3cret", "v1=abc", body, now=1700000100)
    assert not verify_signature("s3cret", "t=soon,v1=abc", body, now=1700000100)


def test_the_webhook_body_names_the_event_and_carries_the_notice() -> None:
    body = json.loads(webhook_body("run.failed", _failed_run()))
    assert body["event"] == "run.failed"
    assert body["project"] == "shop"
    assert body["data"]["status"] == "failed"
    assert body["data"]["failure_reason"] == "stage 'unit' failed"
    assert body["occurred_at"] == "2026-11-30T12:00:00+00:00"


def test_webhook_headers_sign_and_name_the_event_and_delivery_but_slack_ones_are_unsigned() -> None:
    delivery = uuid.uuid4()
    signed = request_headers(
        kind="webhook", event="run.failed", delivery_id=delivery, secret="k", body=b"{}", now=5
    )
    assert signed["X-Comet-Event"] == "run.failed"
    assert signed["X-Comet-Delivery"] == str(delivery)
    assert signed["X-Comet-Signature"] == sign("k", 5, b"{}")
    slack = request_headers(
        kind="slack", event="run.failed", delivery_id=delivery, secret=None, body=b"{}", now=5
    )
    assert "X-Comet-Signature" not in slack


def test_a_slack_message_has_a_fallback_text_and_a_section_with_a_link_to_the_run() -> None:
    message = json.loads(slack_body("run.failed", _failed_run()))
    assert message["text"] == "shop: run failed on main @ aaaaaaaa — stage 'unit' failed"
    section = message["blocks"][0]
    assert section["type"] == "section"
    assert f"<https://ci.example.com/api/v1/runs/{RUN}|View the run>" in section["text"]["text"]
    assert message["blocks"][1]["elements"][0]["text"] == "Comet · run.failed"


def test_slack_control_characters_in_names_cannot_inject_links_or_mentions() -> None:
    message = json.loads(slack_body("run.failed", _failed_run("<!channel> & <https://evil|x>")))
    assert "<!channel>" not in message["blocks"][0]["text"]["text"]
    assert "&lt;!channel&gt; &amp; &lt;https://evil|x&gt;" in message["text"]
