"""The native load generator's pure parts: the raw requests, the data file its Lua script reads,
its report line, and when the generator itself was the limit."""

from __future__ import annotations

import pytest

from bench.scenarios._wrk import WrkError, WrkResult, data_file, parse_report, raw_request


def _result(cpu_s: float, duration_s: float = 2.0, threads: int = 2) -> WrkResult:
    return WrkResult(
        requests=10,
        duration_s=duration_s,
        statuses={202: 8, 200: 2},
        exhausted=0,
        socket_errors={"connect": 0, "timeout": 1},
        p50_ms=1.0,
        p99_ms=9.0,
        cpu_s=cpu_s,
        threads=threads,
    )


def test_a_raw_request_is_an_http_1_1_post_with_the_body_length_and_the_given_headers() -> None:
    raw = raw_request("http://127.0.0.1:8123", "/hook", {"X-Id": "7", "Content-Length": "999"}, b'{"a":1}')
    head, _, body = raw.partition(b"\r\n\r\n")
    assert body == b'{"a":1}'
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /hook HTTP/1.1"
    assert "Host: 127.0.0.1:8123" in lines
    assert "Content-Length: 7" in lines
    assert "Content-Length: 999" not in lines
    assert "X-Id: 7" in lines


def test_the_data_file_prefixes_each_request_with_its_length() -> None:
    assert data_file([b"ab", b"c\nd"]) == b"2\nab3\nc\nd"


def test_the_report_line_is_found_among_wrks_own_output() -> None:
    output = 'Running 2s test\n  2 threads\nCOMET_WRK {"requests": 5, "statuses": {"202": 5}}\n'
    assert parse_report(output) == {"requests": 5, "statuses": {"202": 5}}


def test_no_report_line_is_an_error_quoting_what_wrk_printed() -> None:
    with pytest.raises(WrkError, match="unable to connect"):
        parse_report("unable to connect to 127.0.0.1:1")


def test_rates_count_only_the_status_asked_for() -> None:
    result = _result(cpu_s=1.0)
    assert result.rate(202) == 4.0
    assert result.count(500) == 0


def test_the_generator_is_the_limit_when_its_threads_were_busy_nine_tenths_of_the_time() -> None:
    assert _result(cpu_s=3.7).generator_saturated  # 3.7 of 4 thread-seconds
    assert not _result(cpu_s=1.0).generator_saturated
    assert "GENERATOR was the limit" in _result(cpu_s=3.9).describe(202)
    assert "(not the limit)" in _result(cpu_s=0.5).describe(202)
    assert "others: {200: 2}" in _result(cpu_s=0.5).describe(202)
