"""The health endpoint of processes without an API: what each path answers."""

from __future__ import annotations

import orjson

from events.health import respond


def test_healthz_answers_while_the_process_runs() -> None:
    assert respond("GET", "/healthz", lambda: (False, "starting"))[0] == 200


def test_readyz_is_503_with_what_the_process_waits_for_until_it_is_ready() -> None:
    status, _, body = respond("GET", "/readyz", lambda: (False, "waiting for PostgreSQL at db:5432"))
    assert status == 503
    assert orjson.loads(body) == {"status": "not ready", "detail": "waiting for PostgreSQL at db:5432"}
    status, _, body = respond("GET", "/readyz?verbose=1", lambda: (True, "consuming"))
    assert status == 200
    assert orjson.loads(body)["status"] == "ready"


def test_metrics_are_prometheus_text_and_other_paths_and_methods_are_refused() -> None:
    status, content_type, body = respond("GET", "/metrics", lambda: (True, ""))
    assert status == 200
    assert content_type.startswith("text/plain")
    assert b"# TYPE" in body
    assert respond("GET", "/nope", lambda: (True, ""))[0] == 404
    assert respond("POST", "/readyz", lambda: (True, ""))[0] == 405
