"""A dead letter's payload shown safely: decoded in today's shape when it can be, else raw."""

from __future__ import annotations

import base64
import uuid

import orjson

from events.dlq import PREVIEW_BYTES, preview, show_key
from events.envelope import new_envelope
from schemas.events import RunCancelRequested


def test_a_decodable_event_is_shown_as_today_reads_it_beside_its_raw_text() -> None:
    envelope = new_envelope(RunCancelRequested(run_id=uuid.uuid4(), source="user"), key="k")
    old = envelope.model_dump(mode="json")
    old["schema_version"] = 1
    del old["payload"]["source"]
    p = preview(orjson.dumps(old))
    assert p.decode_error is None
    assert p.event is not None
    assert p.event["schema_version"] == 2
    assert p.event["payload"]["source"] == "user"
    assert p.text is not None
    assert orjson.loads(p.text) == old
    assert p.base64 is None


def test_bytes_that_are_not_utf8_are_shown_in_base64_with_why_they_do_not_decode() -> None:
    raw = b"\x00\xff\xfe"
    p = preview(raw)
    assert p.event is None
    assert p.decode_error is not None
    assert p.decode_error.startswith("not JSON")
    assert p.text is None
    assert p.base64 is not None
    assert base64.b64decode(p.base64) == raw


def test_a_large_value_is_cut_at_the_preview_size_and_says_so() -> None:
    p = preview(b"a" * (PREVIEW_BYTES + 10))
    assert p.size == PREVIEW_BYTES + 10
    assert p.truncated
    assert p.text == "a" * PREVIEW_BYTES


def test_a_letter_without_a_value_says_so() -> None:
    p = preview(None)
    assert (p.size, p.event, p.text, p.base64) == (0, None, None, None)
    assert p.decode_error == "message has no value"


def test_a_key_is_shown_as_text_whatever_its_bytes() -> None:
    assert show_key(None) is None
    assert show_key(b"run-1") == "run-1"
    assert show_key(b"\xff") == "\ufffd"
