"""`/api/v1/dead-letters` (admin): list with filters and cursors, a safe payload preview, redrive
and discard with their audit entries and 404/409 problems, and the figures in `/metrics`."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.settings import ApiSettings
from db.models import AuditEntry, DeadLetter
from events.deadletters import BadRecord, DeadLetterSink
from events.envelope import new_envelope
from events.topics import Topics
from schemas.events import RunCancelRequested
from tests.integration.api.conftest import MakeAccount
from tests.integration.conftest import KAFKA

pytestmark = pytest.mark.integration

BASE = "/api/v1/dead-letters"


async def _letter(
    sessions: async_sessionmaker[AsyncSession],
    *,
    consumer: str,
    topic: str,
    value: bytes | None,
    kind: str = "undecodable",
    reason: str = "not JSON",
    offset: int = 0,
) -> uuid.UUID:
    await DeadLetterSink(sessions, Topics("unused"), consumer).record(
        [BadRecord(topic, 0, offset, b"k", value, reason)], kind=kind
    )
    async with sessions() as session:
        found = await session.scalar(
            select(DeadLetter.id)
            .where(DeadLetter.consumer == consumer, DeadLetter.offset == offset)
            .order_by(DeadLetter.id.desc())
        )
    assert found is not None
    return found


async def _audit(sessions: async_sessionmaker[AsyncSession], letter_id: uuid.UUID) -> list[AuditEntry]:
    async with sessions() as session:
        rows = await session.scalars(
            select(AuditEntry).where(AuditEntry.target_id == str(letter_id)).order_by(AuditEntry.at)
        )
        return list(rows.all())


async def test_only_admins_may_see_or_handle_dead_letters(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    user = await make_account()
    some = uuid.uuid4()
    assert (await client.get(BASE)).status_code == 401
    for method, path in [
        ("GET", BASE),
        ("GET", f"{BASE}/{some}"),
        ("POST", f"{BASE}/{some}/redrive"),
        ("DELETE", f"{BASE}/{some}"),
    ]:
        response = await client.request(method, path, headers=user.headers)
        assert response.status_code == 403, (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"


async def test_dead_letters_are_listed_newest_first_filtered_and_paged_by_cursor(
    client: httpx.AsyncClient, make_account: MakeAccount, api_sessions: async_sessionmaker[AsyncSession]
) -> None:
    admin = await make_account(admin=True)
    consumer = f"listing-{uuid.uuid4().hex[:6]}"
    ids = [
        await _letter(api_sessions, consumer=consumer, topic="t.a", value=b"{", offset=i, kind=kind)
        for i, kind in enumerate(["undecodable", "handler_failed", "undecodable"])
    ]

    page = (await client.get(BASE, params={"consumer": consumer, "limit": 2}, headers=admin.headers)).json()
    assert [d["id"] for d in page["data"]] == [str(ids[2]), str(ids[1])]
    rest = await client.get(
        BASE, params={"consumer": consumer, "limit": 2, "cursor": page["next_cursor"]}, headers=admin.headers
    )
    assert [d["id"] for d in rest.json()["data"]] == [str(ids[0])]
    assert rest.json()["next_cursor"] is None

    failed = await client.get(
        BASE, params={"consumer": consumer, "kind": "handler_failed"}, headers=admin.headers
    )
    assert [d["id"] for d in failed.json()["data"]] == [str(ids[1])]
    assert failed.json()["data"][0] | {"created_at": None} == {
        "id": str(ids[1]),
        "state": "waiting",
        "consumer": consumer,
        "topic": "t.a",
        "partition": 0,
        "offset": 1,
        "kind": "handler_failed",
        "reason": "not JSON",
        "key": "k",
        "event_id": None,
        "event_type": None,
        "run_id": None,
        "created_at": None,
        "redriven_at": None,
        "redriven_by": None,
        "redrive_count": 0,
        "discarded_at": None,
        "discarded_by": None,
    }
    none = await client.get(BASE, params={"consumer": consumer, "state": "discarded"}, headers=admin.headers)
    assert none.json() == {"data": [], "next_cursor": None}
    other_topic = await client.get(BASE, params={"consumer": consumer, "topic": "t.b"}, headers=admin.headers)
    assert other_topic.json()["data"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"state": "lost"}, "state"),
        ({"kind": "odd"}, "kind"),
        ({"cursor": "!!"}, "cursor"),
        ({"topic": "a\x00"}, "topic"),
    ],
)
async def test_a_bad_filter_or_cursor_is_a_422_problem_naming_it(
    client: httpx.AsyncClient, make_account: MakeAccount, params: dict[str, str], field: str
) -> None:
    admin = await make_account(admin=True)
    response = await client.get(BASE, params=params, headers=admin.headers)
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [f"query.{field}"]


async def test_a_letter_shows_its_payload_decoded_in_todays_shape_when_it_decodes(
    client: httpx.AsyncClient, make_account: MakeAccount, api_sessions: async_sessionmaker[AsyncSession]
) -> None:
    admin = await make_account(admin=True)
    run_id = uuid.uuid4()
    old = new_envelope(RunCancelRequested(run_id=run_id, source="user"), key=str(run_id)).model_dump(
        mode="json"
    )
    old["schema_version"] = 1
    del old["payload"]["source"]
    letter = await _letter(
        api_sessions, consumer="preview", topic="t.c", value=orjson.dumps(old), kind="handler_failed"
    )

    body = (await client.get(f"{BASE}/{letter}", headers=admin.headers)).json()
    assert body["event_id"] == old["event_id"]
    assert body["event_type"] == "run.cancel_requested"
    assert body["run_id"] == str(run_id)
    assert body["payload"]["decode_error"] is None
    assert body["payload"]["event"]["schema_version"] == 2
    assert body["payload"]["event"]["payload"]["source"] == "user"
    assert orjson.loads(body["payload"]["text"]) == old
    assert body["payload"]["base64"] is None


async def test_a_letter_of_raw_bytes_is_shown_in_base64_with_why_it_does_not_decode(
    client: httpx.AsyncClient, make_account: MakeAccount, api_sessions: async_sessionmaker[AsyncSession]
) -> None:
    admin = await make_account(admin=True)
    raw = b"\xff\xfe\x00binary" * 10
    letter = await _letter(api_sessions, consumer="preview-bytes", topic="t.d", value=raw)

    payload = (await client.get(f"{BASE}/{letter}", headers=admin.headers)).json()["payload"]
    assert payload["event"] is None
    assert payload["decode_error"].startswith("not JSON")
    assert payload["text"] is None
    assert base64.b64decode(payload["base64"]) == raw
    assert payload["size"] == len(raw)
    assert payload["truncated"] is False


async def test_an_unknown_letter_is_a_404_problem_for_every_verb(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    admin = await make_account(admin=True)
    some = uuid.uuid4()
    for method, path in [
        ("GET", f"{BASE}/{some}"),
        ("POST", f"{BASE}/{some}/redrive"),
        ("DELETE", f"{BASE}/{some}"),
    ]:
        response = await client.request(method, path, headers=admin.headers)
        assert response.status_code == 404, (method, response.text)
        assert response.json()["type"] == "urn:comet:problem:not-found"


async def test_a_discarded_letter_is_kept_with_who_and_when_audited_and_cannot_be_redriven(
    client: httpx.AsyncClient, make_account: MakeAccount, api_sessions: async_sessionmaker[AsyncSession]
) -> None:
    admin = await make_account(admin=True)
    letter = await _letter(api_sessions, consumer="discarding", topic="t.e", value=b"{")

    response = await client.delete(f"{BASE}/{letter}", headers=admin.headers)
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "discarded"
    assert response.json()["discarded_by"] == admin.email
    again = await client.get(f"{BASE}/{letter}", headers=admin.headers)
    assert again.json()["state"] == "discarded"

    for method, path in [("POST", f"{BASE}/{letter}/redrive"), ("DELETE", f"{BASE}/{letter}")]:
        refused = await client.request(method, path, headers=admin.headers)
        assert refused.status_code == 409, refused.text
        assert "was discarded by" in refused.json()["detail"]
    entries = await _audit(api_sessions, letter)
    assert [(e.action, str(e.actor_id)) for e in entries] == [("dead_letter.discarded", admin.id)]


async def test_a_redrive_publishes_the_stored_message_to_its_topic_once_and_is_audited(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    api_sessions: async_sessionmaker[AsyncSession],
    api_settings: ApiSettings,
) -> None:
    admin = await make_account(admin=True)
    topic = Topics(api_settings.topic_namespace).run_commands
    value = b'{"not": "an event", "marker": "' + uuid.uuid4().hex.encode() + b'"}'
    letter = await _letter(api_sessions, consumer="redriving", topic=topic, value=value, offset=7)
    sibling = await _letter(api_sessions, consumer="another-group", topic=topic, value=value, offset=7)

    response = await client.post(f"{BASE}/{letter}/redrive", headers=admin.headers)
    assert response.status_code == 202, response.text
    assert response.json()["state"] == "redriven"
    assert response.json()["redriven_by"] == admin.email
    second = await client.post(f"{BASE}/{letter}/redrive", headers=admin.headers)
    assert second.status_code == 409
    assert "already redriven" in second.json()["detail"]

    # Every consumer group of the topic gets the copy, so the other group's letter for the same
    # message is redriven with it.
    other = (await client.get(f"{BASE}/{sibling}", headers=admin.headers)).json()
    assert (other["state"], other["redrive_count"]) == ("redriven", 1)
    assert [e.action for e in await _audit(api_sessions, letter)] == ["dead_letter.redriven"]
    assert await _published(topic, value) == 1


async def _published(topic: str, value: bytes) -> int:
    """How many messages on `topic` carry exactly `value`."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=KAFKA, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        while not consumer.assignment():  # without a group, every partition of the topic
            await consumer.getmany(timeout_ms=100)
        partitions = list(consumer.assignment())
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        found = 0
        for tp in partitions:
            while await consumer.position(tp) < end[tp]:
                records = (await consumer.getmany(tp, timeout_ms=500)).get(tp, [])
                found += sum(1 for r in records if r.value == value)
        return found
    finally:
        await consumer.stop()


async def test_metrics_show_waiting_letters_and_the_age_of_the_oldest_by_consumer_and_kind(
    client: httpx.AsyncClient, make_account: MakeAccount, api_sessions: async_sessionmaker[AsyncSession]
) -> None:
    admin = await make_account(admin=True)
    consumer = f"metrics-{uuid.uuid4().hex[:6]}"
    old = await _letter(api_sessions, consumer=consumer, topic="t.f", value=b"{", offset=1)
    await _letter(api_sessions, consumer=consumer, topic="t.f", value=b"{", offset=2)
    gone = await _letter(api_sessions, consumer=consumer, topic="t.f", value=b"{", offset=3)
    async with api_sessions.begin() as session:
        an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
        await session.execute(update(DeadLetter).where(DeadLetter.id == old).values(created_at=an_hour_ago))
    assert (await client.delete(f"{BASE}/{gone}", headers=admin.headers)).status_code == 200

    text = (await client.get("/metrics")).text
    labels = f'{{consumer="{consumer}",kind="undecodable"}}'
    assert f"comet_dead_letters{labels} 2.0" in text
    age = _sample(text, f"comet_dead_letters_oldest_age_seconds{labels}")
    assert 3600 <= age < 3600 + 120


def _sample(text: str, name: str) -> float:
    lines: list[Any] = [line for line in text.splitlines() if line.startswith(name + " ")]
    assert len(lines) == 1, (name, lines)
    return float(lines[0].rsplit(" ", 1)[1])
