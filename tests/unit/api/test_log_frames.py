"""Server-Sent Event frames of followed logs."""

from __future__ import annotations

from api.logstream import parse_last_event_id, sse_event


def test_every_line_of_a_chunk_is_its_own_data_line() -> None:
    assert sse_event("one\ntwo\n", event_id="1:0") == "id: 1:0\ndata: one\ndata: two\ndata: \n\n"


def test_carriage_returns_end_lines_too_so_no_frame_is_broken() -> None:
    frame = sse_event("10%\r20%\r\ndone")
    assert frame == "data: 10%\ndata: 20%\ndata: done\n\n"


def test_named_events_carry_their_name() -> None:
    assert (
        sse_event('{"status": "succeeded"}', event="end") == 'event: end\ndata: {"status": "succeeded"}\n\n'
    )


def test_a_reconnecting_client_resumes_after_its_last_event() -> None:
    assert parse_last_event_id("2:17") == (2, 17)
    for bad in (None, "", "17", "a:b", "1:-1", "1:2:3"):
        assert parse_last_event_id(bad) is None
