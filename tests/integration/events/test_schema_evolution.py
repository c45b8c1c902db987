"""Schema evolution and dead letters on the real services: a poison event (a version today's code
cannot read) lands in the dead letters with its reason, and after the fix (its upcaster) one
redrive applies it once; a history written in older shapes replays into today's state."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import DeadLetter, InboxEntry, OutboxEvent, Run
from events.envelope import decode
from events.producer import EventProducer, OutgoingMessage
from events.topics import Topics
from events.upcasting import UPCASTERS
from schemas.events import RunCancelRequested
from schemas.ids import uuid7
from schemas.states import RunStatus
from tests.integration.conftest import KAFKA, Platform, make_repo
from tests.integration.helpers import add_project, start_run, wait_for_run

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parents[2] / "fixtures" / "events" / "v1"
LONG_STAGE = "stages:\n  deploy:\n    run: sleep 60\n"
GROUP_REASON = "cancelled by a newer run in concurrency group 'deploy-prod' (#9)"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _v1_cancel(run_id: uuid.UUID) -> tuple[uuid.UUID, bytes]:
    """A `run.cancel_requested` as version 1 wrote it (no `source`)."""
    event_id = uuid7()
    envelope = {
        "event_id": str(event_id),
        "type": "run.cancel_requested",
        "schema_version": 1,
        "occurred_at": "2026-11-01T10:00:00+00:00",
        "key": str(run_id),
        "correlation_id": str(event_id),
        "causation_id": None,
        "payload": {"run_id": str(run_id), "reason": GROUP_REASON, "actor_id": None},
    }
    return event_id, orjson.dumps(envelope)


async def _publish(topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = EventProducer(KAFKA, client_id="test-publisher")
    try:
        await producer.send_many([OutgoingMessage(topic, key, value) for key, value in messages])
    finally:
        await producer.stop()


async def _dead_letter(
    sessions: async_sessionmaker[AsyncSession], event_id: uuid.UUID, timeout_s: float = 30.0
) -> DeadLetter:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        async with sessions() as session:
            letter = await session.scalar(select(DeadLetter).where(DeadLetter.event_id == event_id))
        if letter is not None:
            return letter
        await asyncio.sleep(0.1)
    raise AssertionError(f"no dead letter for {event_id} after {timeout_s} s")


async def _consumed_everything(group: str, topic: str, timeout_s: float = 30.0) -> None:
    """Wait until `group` has committed offsets up to the end of every partition of `topic`."""
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    probe = AIOKafkaConsumer(topic, bootstrap_servers=KAFKA, enable_auto_commit=False)
    await admin.start()
    await probe.start()
    try:
        while not probe.assignment():
            await probe.getmany(timeout_ms=100)
        partitions: list[TopicPartition] = list(probe.assignment())
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ends = await probe.end_offsets(partitions)
            committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
            done = {tp: committed[tp].offset if tp in committed else -1 for tp in partitions}
            if all(done[tp] >= ends[tp] or ends[tp] == 0 for tp in partitions):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{group} did not consume {topic} to its end in {timeout_s} s")
    finally:
        await probe.stop()
        await admin.close()


async def _comet(common_env: dict[str, Any], *args: str) -> tuple[int, str, str]:
    """Run the `comet` command on the platform's database and topics."""
    env = {**os.environ, **{f"COMET_{k.upper()}": str(v) for k, v in common_env.items()}}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _cancellations(sessions: async_sessionmaker[AsyncSession], run_id: uuid.UUID) -> int:
    """How many times the run's history says it became cancelled."""
    async with sessions() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(OutboxEvent)
            .where(
                OutboxEvent.run_id == run_id,
                OutboxEvent.event_type == "run.status_changed",
                OutboxEvent.envelope["payload"]["status"].astext == RunStatus.CANCELLED.value,
            )
        )
    return int(count or 0)


async def _history_size(sessions: async_sessionmaker[AsyncSession], run_id: uuid.UUID) -> int:
    async with sessions() as session:
        count = await session.scalar(
            select(func.count()).select_from(OutboxEvent).where(OutboxEvent.run_id == run_id)
        )
    return int(count or 0)


@pytest.mark.timeout(180)
async def test_a_poison_event_waits_in_the_dead_letters_until_its_upcaster_ships_then_one_redrive_applies_it_once(
    platform: Platform,
    sessions: async_sessionmaker[AsyncSession],
    namespace: str,
    common_env: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topics = Topics(namespace)
    repo, _ = make_repo(tmp_path / "repo", {".comet.yml": LONG_STAGE})
    project = await add_project(sessions, str(repo))
    run_id = await start_run(sessions, topics, project)
    await wait_for_run(sessions, run_id, until=frozenset({RunStatus.RUNNING}))

    # Today's code without the fix: version 1 of run.cancel_requested cannot be read.
    monkeypatch.delitem(UPCASTERS.steps, ("run.cancel_requested", 1))
    event_id, value = _v1_cancel(run_id)
    await _publish(topics.run_commands, [(str(run_id).encode(), value)])

    letter = await _dead_letter(sessions, event_id)
    assert letter.consumer == topics.orchestrator_group
    assert letter.kind == "undecodable"
    assert letter.run_id == run_id
    assert letter.event_type == "run.cancel_requested"
    assert "no upcaster for run.cancel_requested from schema_version 1 to 2" in letter.reason
    assert (
        await wait_for_run(sessions, run_id, until=frozenset({RunStatus.RUNNING}))
    ).cancel_requested_at is None

    # The fix ships: the upcaster is registered again. One redrive applies the event once.
    monkeypatch.undo()
    code, out, err = await _comet(common_env, "dlq", "redrive", "--id", str(letter.id))
    assert (code, err) == (0, ""), err
    assert f"redriven {letter.id} to {topics.run_commands}" in out
    run = await wait_for_run(sessions, run_id)
    assert run.status == RunStatus.CANCELLED
    assert run.failure_reason == GROUP_REASON
    await _consumed_everything(topics.orchestrator_group, topics.run_commands)
    assert await _cancellations(sessions, run_id) == 1

    # A second redrive is refused, in one line.
    code, out, err = await _comet(common_env, "dlq", "redrive", "--id", str(letter.id))
    assert code == 1
    assert err.count("\n") == 1
    assert "already redriven" in err

    history_before = await _history_size(sessions, run_id)
    # A letter for the same, already applied event (as if another consumer's attempt had failed
    # on it) redriven too: the inbox recognises the event and nothing changes.
    async with sessions.begin() as session:
        twin = DeadLetter(
            consumer=topics.orchestrator_group,
            topic=topics.run_commands,
            partition=letter.partition,
            offset=letter.offset + 1_000_000,
            key=letter.key,
            value=letter.value,
            reason="handler failed 3 times: RuntimeError('flaky')",
            kind="handler_failed",
            event_id=event_id,
            event_type=letter.event_type,
            run_id=run_id,
        )
        session.add(twin)
    code, _, err = await _comet(
        common_env, "dlq", "redrive", "--all", "--consumer", topics.orchestrator_group
    )
    assert code == 0, err
    await _consumed_everything(topics.orchestrator_group, topics.run_commands)
    after = await wait_for_run(sessions, run_id)
    assert (after.status, after.finished_at, after.failure_reason) == (
        run.status,
        run.finished_at,
        run.failure_reason,
    )
    assert await _cancellations(sessions, run_id) == 1
    assert await _history_size(sessions, run_id) == history_before  # not even a note
    async with sessions() as session:
        inbox = await session.scalar(
            select(func.count()).select_from(InboxEntry).where(InboxEntry.event_id == event_id)
        )
        letters = await session.scalar(
            select(func.count()).select_from(DeadLetter).where(DeadLetter.event_id == event_id)
        )
    assert (inbox, letters) == (1, 2)


@pytest.mark.timeout(120)
async def test_a_history_written_in_version_1_shapes_replays_into_todays_state(
    platform: Platform, sessions: async_sessionmaker[AsyncSession], namespace: str, tmp_path: Path
) -> None:
    topics = Topics(namespace)
    repo, _ = make_repo(tmp_path / "repo", {".comet.yml": LONG_STAGE})
    project = await add_project(sessions, str(repo))
    text = (FIXTURES / "cancelled_by_concurrency_group.json").read_text()
    fixture_project = "018f3c1a-0000-7000-8000-0000000000b1"
    fresh = {old: str(uuid7()) for old in set(_UUID.findall(text)) if old != fixture_project}
    for old, new in fresh.items():
        text = text.replace(old, new)
    history: list[dict[str, Any]] = orjson.loads(text.replace(fixture_project, str(project)))
    assert {e["schema_version"] for e in history} == {1}
    requested, cancel = history
    run_id = uuid.UUID(requested["payload"]["run_id"])
    # The run row as it was when the history was written (the API inserts it with its event).
    async with sessions.begin() as session:
        p = requested["payload"]
        session.add(
            Run(
                id=run_id,
                project_id=project,
                number=10_000 + int(time.time() * 1000) % 1_000_000,
                status=RunStatus.REQUESTED.value,
                ref=p["ref"],
                sha=p["sha"],
                trigger=p["trigger"],
                variables=p["variables"],
            )
        )

    await _publish(topics.run_commands, [(e["key"].encode(), orjson.dumps(e)) for e in history])

    run = await wait_for_run(sessions, run_id)
    assert run.status == RunStatus.CANCELLED
    assert run.failure_reason == cancel["payload"]["reason"]
    today = decode(orjson.dumps(cancel)).typed()
    assert isinstance(today, RunCancelRequested)
    assert today.source == "concurrency_group"
    async with sessions() as session:
        dead = await session.scalar(
            select(func.count())
            .select_from(DeadLetter)
            .where(DeadLetter.event_id.in_([uuid.UUID(e["event_id"]) for e in history]))
        )
    assert dead == 0
