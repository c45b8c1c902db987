"""`comet replay run`: the verdict line, the table and the JSON made of an audit."""

from __future__ import annotations

import dataclasses
import json

from rich.console import Console

from cli.replay_run import table, to_json, verdict
from orchestrator.audit_trail import Audit, audit
from tests.unit.orchestrator.test_audit_trail import RUN, busy_run


def _audit() -> Audit:
    shell = busy_run()
    return audit(RUN, shell.history, shell.plan, shell.applied)


def _with_first_input_different(result: Audit) -> Audit:
    steps = list(result.steps)
    index = next(i for i, s in enumerate(steps) if s.summary.startswith("unit#1 finished"))
    assert steps[index].today is not None
    steps[index] = dataclasses.replace(steps[index], same=False)
    return dataclasses.replace(result, steps=tuple(steps))


def _rendered(result: Audit) -> str:
    console = Console(width=400, record=True)
    console.print(table(result))
    return console.export_text()


def test_the_verdict_of_a_deterministic_run_says_every_decision_is_as_recorded() -> None:
    assert verdict(_audit()) == "11 inputs re-decided by today's decide(): every decision as recorded"


def test_the_verdict_names_the_first_step_decided_differently() -> None:
    result = _with_first_input_different(_audit())
    first = result.differences[0]
    assert verdict(result) == (
        f"1 of 11 inputs decided differently today; the first at event {first.seq} "
        "(attempt.finished: unit#1 finished: failed (exit 1, script_failure))"
    )


def test_the_table_shows_each_input_with_its_recorded_decision_and_todays() -> None:
    text = _rendered(_audit())
    assert "run #1 requested for refs/heads/main (api)" in text
    assert "stage unit: running → queued (attempt 2, exit 1); dispatch unit#2 to pool default" in text
    assert text.count("same") == 11
    assert "DIFFERS" not in text
    assert "DIFFERS: " in _rendered(_with_first_input_different(_audit()))


def test_the_json_holds_every_step_with_both_decisions() -> None:
    document = json.loads(to_json(_audit(), undecodable=0))
    assert document["deterministic"] is True
    assert document["differences"] == 0
    inputs = [s for s in document["steps"] if s["kind"] == "input"]
    assert len(inputs) == 11
    retry = next(s for s in inputs if s["summary"].startswith("unit#1 finished"))
    assert retry["recorded"] == retry["today"]
    assert retry["recorded"]["dispatches"] == ["unit#2 to pool default"]
    assert retry["same"] is True
    assert retry["decided_at"].endswith("+00:00")
