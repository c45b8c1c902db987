"""How the harness reads a run's history out of outbox rows, and its fault schedule."""

from __future__ import annotations

import random
import uuid
from typing import Any

from chaos.checks import HistoryEvent, illegal_transitions
from chaos.harness import FAULT_KINDS, Options, fault_schedule, history_of


def _row(kind: str, **payload: Any) -> dict[str, Any]:
    return {"event_type": kind, "payload": payload}


def test_outbox_rows_become_status_changes_of_runs_stages_and_attempts() -> None:
    run, attempt = uuid.uuid4(), uuid.uuid4()
    rows = [
        _row("run.status_changed", run_id=str(run), status="queued", previous="requested"),
        _row("stage.status_changed", run_id=str(run), stage="a", status="queued", previous="pending"),
        _row("attempt.dispatched", run_id=str(run), attempt_id=str(attempt)),
        _row("attempt.started", run_id=str(run), attempt_id=str(attempt)),
        _row("attempt.finished", run_id=str(run), attempt_id=str(attempt), status="succeeded"),
    ]
    history, finished = history_of(rows)
    assert history == [
        HistoryEvent(run, "run", "requested", "queued"),
        HistoryEvent(run, "stage a", "pending", "queued"),
        HistoryEvent(run, f"attempt {attempt}", None, "queued"),
        HistoryEvent(run, f"attempt {attempt}", None, "running"),
        HistoryEvent(run, f"attempt {attempt}", None, "succeeded"),
    ]
    assert finished == [attempt]
    assert illegal_transitions(history) == []


def test_a_payload_stored_as_json_text_is_read_too() -> None:
    run = uuid.uuid4()
    rows = [{"event_type": "run.status_changed", "payload": f'{{"run_id": "{run}", "status": "queued"}}'}]
    assert history_of(rows)[0] == [HistoryEvent(run, "run", None, "queued")]


def _schedule(opts: Options) -> list[str]:
    return fault_schedule(opts, random.Random(1))  # noqa: S311 - a test's fixed order


def test_the_schedule_has_every_kind_at_least_once_and_one_per_30_runs() -> None:
    assert sorted(_schedule(Options(runs=30))) == sorted(FAULT_KINDS)
    many = _schedule(Options(runs=1000))
    assert len(many) == 33
    assert set(many) == set(FAULT_KINDS)


def test_the_schedule_keeps_to_the_kinds_asked_for() -> None:
    only = ("kafka restart",)
    assert _schedule(Options(runs=60, faults=3, kinds=only)) == ["kafka restart"] * 3
