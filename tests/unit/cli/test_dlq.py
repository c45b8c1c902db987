"""`comet dlq`: the table of letters, the redrive summary, ids and bad options as one line."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from rich.console import Console

from cli import main as cli_main
from cli.dlq import DlqError, RedriveSummary, parse_id, table
from db.models import DeadLetter


def _letter(**overrides: object) -> DeadLetter:
    values: dict[str, object] = {
        "id": uuid.UUID("01a22a5a-0000-7000-8000-000000000001"),
        "consumer": "comet.orchestrator",
        "topic": "comet.run-commands",
        "partition": 2,
        "offset": 41,
        "key": b"k",
        "value": b"{",
        "reason": "not JSON: unexpected end of data",
        "kind": "undecodable",
        "created_at": datetime(2026, 11, 30, 3, 0, tzinfo=UTC),
    }
    values.update(overrides)
    return DeadLetter(**values)


def _render(letters: list[DeadLetter]) -> str:
    console = Console(width=400, record=True)
    console.print(table(letters))
    return console.export_text()


def test_the_table_shows_each_letters_state_origin_and_reason() -> None:
    text = _render(
        [
            _letter(),
            _letter(
                id=uuid.UUID("01a22a5a-0000-7000-8000-000000000002"),
                discarded_at=datetime(2026, 11, 30, 4, 0, tzinfo=UTC),
                kind="handler_failed",
                event_type="run.cancel_requested",
            ),
        ]
    )
    first, second = (line for line in text.splitlines() if "01a22a5a" in line)
    assert "waiting" in first
    assert "2:41" in first
    assert "not JSON: unexpected end of data" in first
    assert "2026-11-30 03:00:00" in first
    assert "discarded" in second
    assert "handler_failed" in second
    assert "run.cancel_requested" in second


def test_a_long_reason_is_cut_in_the_table() -> None:
    text = _render([_letter(reason="x" * 500)])
    assert "x" * 117 + "..." in text
    assert "x" * 118 not in text


def test_the_redrive_summary_is_one_line_of_counts() -> None:
    assert RedriveSummary(scanned=5, redriven=3, skipped=2).line() == "scanned 5 / redriven 3 / skipped 2"


def test_an_id_that_is_not_a_uuid_is_one_clear_error() -> None:
    assert parse_id("01a22a5a-0000-7000-8000-000000000001") == uuid.UUID(
        "01a22a5a-0000-7000-8000-000000000001"
    )
    with pytest.raises(DlqError, match="'42' is not a dead letter id"):
        parse_id("42")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dlq", "redrive"], "comet: give exactly one of --id ID and --all\n"),
        (["dlq", "redrive", "--all", "--id", "x"], "comet: give exactly one of --id ID and --all\n"),
        (
            ["dlq", "show", "nope"],
            "comet: 'nope' is not a dead letter id (a UUID, as `comet dlq list` shows)\n",
        ),
        (
            ["dlq", "discard", "nope"],
            "comet: 'nope' is not a dead letter id (a UUID, as `comet dlq list` shows)\n",
        ),
    ],
)
def test_bad_arguments_end_in_one_line_and_exit_1_before_touching_the_database(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.argv", ["comet", *args])
    with pytest.raises(SystemExit) as exited:
        cli_main.main()
    assert exited.value.code == 1
    assert capsys.readouterr().err == message
