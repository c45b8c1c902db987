"""`comet dlq list | show | discard` on the real database: a table, a readable letter, a discard
kept with who and when, and one line for each mistake."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import AuditEntry, DeadLetter
from events.deadletters import BadRecord, DeadLetterSink
from events.topics import Topics

pytestmark = pytest.mark.integration


def _comet(common_env: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **{f"COMET_{k.upper()}": str(v) for k, v in common_env.items()}, "COLUMNS": "300"}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def _letter(sessions: async_sessionmaker[AsyncSession], consumer: str, value: bytes) -> uuid.UUID:
    await DeadLetterSink(sessions, Topics("cli-test"), consumer).record(
        [BadRecord("cli-test.run-commands", 1, 17, b"key-1", value, "not JSON: unexpected character")]
    )
    async with sessions() as session:
        found = await session.scalar(select(DeadLetter.id).where(DeadLetter.consumer == consumer))
    assert found is not None
    return found


async def test_an_operator_lists_shows_and_discards_a_dead_letter(
    sessions: async_sessionmaker[AsyncSession], common_env: dict[str, Any]
) -> None:
    consumer = f"cli-{uuid.uuid4().hex[:6]}"
    letter = await _letter(sessions, consumer, b"{oops \xff")

    listed = _comet(common_env, "dlq", "list", "--consumer", consumer)
    assert listed.returncode == 0, listed.stderr
    assert str(letter) in listed.stdout
    assert "waiting" in listed.stdout
    assert "1:17" in listed.stdout

    shown = _comet(common_env, "dlq", "show", str(letter))
    assert shown.returncode == 0, shown.stderr
    assert "not JSON: unexpected character" in shown.stdout
    assert "cli-test.run-commands partition 1 offset 17" in shown.stdout
    assert "raw value (base64, not UTF-8):" in shown.stdout

    discarded = _comet(common_env, "dlq", "discard", str(letter))
    assert discarded.returncode == 0, discarded.stderr
    assert discarded.stdout.startswith(f"discarded {letter}")
    again = _comet(common_env, "dlq", "discard", str(letter))
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1
    assert "was discarded by cli:" in again.stderr
    redrive = _comet(common_env, "dlq", "redrive", "--id", str(letter))
    assert redrive.returncode == 1
    assert "was discarded by cli:" in redrive.stderr

    waiting = _comet(common_env, "dlq", "list", "--consumer", consumer, "--state", "waiting")
    assert waiting.stdout.strip() == "no dead letters matching the filters"
    async with sessions() as session:
        row = await session.get(DeadLetter, letter)
        entries = (await session.scalars(select(AuditEntry).where(AuditEntry.target_id == str(letter)))).all()
    assert row is not None
    assert row.discarded_at is not None
    assert row.discarded_by is not None
    assert row.discarded_by.startswith("cli")
    assert [(e.action, e.actor_id) for e in entries] == [("dead_letter.discarded", None)]


def test_an_unknown_letter_or_a_bad_filter_is_one_line_and_exit_1(common_env: dict[str, Any]) -> None:
    missing = uuid.uuid4()
    for args, message in [
        (("dlq", "show", str(missing)), f"comet: There is no dead letter {missing}\n"),
        (("dlq", "discard", str(missing)), f"comet: There is no dead letter {missing}\n"),
        (("dlq", "redrive", "--id", str(missing)), f"comet: There is no dead letter {missing}\n"),
        (
            ("dlq", "list", "--state", "lost"),
            "comet: --kind is undecodable or handler_failed; --state is waiting, redriven or discarded\n",
        ),
    ]:
        result = _comet(common_env, *args)
        assert (result.returncode, result.stderr) == (1, message), args


def test_an_unreachable_database_is_one_line(common_env: dict[str, Any]) -> None:
    env = {**common_env, "database_url": "postgresql+asyncpg://comet:comet@127.0.0.1:1/comet"}
    result = _comet(env, "dlq", "list")
    assert result.returncode == 1
    assert result.stderr.startswith("comet: the database is unreachable")
    assert result.stderr.count("\n") == 1
