"""Outbound notifications end to end: integrations created through the API, runs on the real
orchestrator and workers, and a local receiver (http on loopback, which COMET_OUTBOUND_ALLOW
names for these tests) that checks what arrives — signed webhook calls, retried after the
receiver failed the first tries, every attempt listed; Slack messages; filters that send nothing."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.settings import OrchestratorSettings
from db.crypto import SecretBox
from db.engine import make_engine, make_sessionmaker
from db.models import (
    Integration,
    NotificationAttempt,
    NotificationDelivery,
    Run,
    Stage,
    StageAttempt,
    TestCase,
)
from db.repositories import notifications
from events.consumer import Received
from events.envelope import new_envelope
from events.topics import Topics
from orchestrator.notification_format import verify_signature
from orchestrator.notifier import Notifier
from schemas.events import AttemptFinished, DeploymentStatusChanged, TestCounts
from schemas.outbound import OutboundAllow, parse_allow
from tests.integration.conftest import TEST_SECRET_KEY, Platform, make_repo
from tests.integration.helpers import add_project, owner_headers, start_run, wait_for_run

pytestmark = pytest.mark.integration


class Receiver:
    """An HTTP server on 127.0.0.1 recording every call; the first `failures` get a 500."""

    def __init__(self, failures: int = 0) -> None:
        self.calls: list[dict[str, Any]] = []
        self.failures = failures
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                failing = len(receiver.calls) < receiver.failures
                receiver.calls.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body, "ok": not failing}
                )
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def delivered(self, path: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["path"] == path and c["ok"]]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(failures=2)
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


PIPELINE = """
name: ci
stages:
  build: {run: echo built}
  unit: {run: echo tested, needs: [build]}
"""


async def _integration(
    client: httpx.AsyncClient, headers: dict[str, str], project_id: uuid.UUID, body: dict[str, Any]
) -> dict[str, Any]:
    created = await client.post(f"/api/v1/projects/{project_id}/integrations", json=body, headers=headers)
    assert created.status_code == 201, created.text
    answer: dict[str, Any] = created.json()
    return answer


async def _until(what: str, check: Any, timeout: float = 60) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not check():
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


@pytest.fixture
async def own_sessions(own_database: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on a database of the test's own, for tests that drive a notifier by hand: a notifier
    sends every due delivery of its database, other tests' included."""
    engine = make_engine(OrchestratorSettings(database_url=own_database))
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.mark.timeout(120)
async def test_a_signed_notification_arrives_after_the_receiver_failed_the_first_tries(
    platform: Platform,
    sessions: async_sessionmaker[AsyncSession],
    namespace: str,
    tmp_path: Path,
    api_client: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    repo, sha = make_repo(tmp_path / "repo", {".comet.yml": PIPELINE})
    project_id = await add_project(sessions, str(repo))
    headers = await owner_headers(api_client, sessions, project_id)
    hook = await _integration(
        api_client,
        headers,
        project_id,
        {"kind": "webhook", "url": f"{receiver.url}/hooks", "events": ["run.finished", "approval.requested"]},
    )
    secret = hook["secret"]
    assert len(secret) == 64
    slack = await _integration(
        api_client,
        headers,
        project_id,
        {"kind": "slack", "url": f"{receiver.url}/slack/T000/B000/XXXX", "events": ["run.failed"]},
    )
    assert slack["secret"] is None
    assert slack["url"] == f"{receiver.url}/…", "a Slack URL's token is not shown"

    run_id = await start_run(sessions, Topics(namespace), project_id, sha=sha)
    assert (await wait_for_run(sessions, run_id)).status == "succeeded"
    await _until("the delivered webhook call", lambda: receiver.delivered("/hooks"))

    [call] = receiver.delivered("/hooks")
    assert verify_signature(secret, call["headers"]["X-Comet-Signature"], call["body"], now=int(time.time()))
    assert call["headers"]["Content-Type"] == "application/json"
    assert call["headers"]["X-Comet-Event"] == "run.finished"
    body = json.loads(call["body"])
    assert (body["event"], body["project_id"]) == ("run.finished", str(project_id))
    assert (body["data"]["run_id"], body["data"]["status"], body["data"]["sha"]) == (
        str(run_id),
        "succeeded",
        sha,
    )
    tries = [c for c in receiver.calls if c["path"] == "/hooks"]
    assert [c["ok"] for c in tries] == [False, False, True]
    assert {c["headers"]["X-Comet-Delivery"] for c in tries} == {call["headers"]["X-Comet-Delivery"]}, (
        "a retry sends the same delivery again"
    )
    stamps = [c["headers"]["X-Comet-Signature"] for c in tries]
    assert len(set(stamps)) == 3, "each attempt is signed when it is sent"
    assert not [c for c in receiver.calls if c["path"].startswith("/slack")], "the filter excluded a success"

    async def listed() -> list[dict[str, Any]]:
        url = f"/api/v1/projects/{project_id}/integrations/{hook['id']}/deliveries"
        response = await api_client.get(url, headers=headers)
        assert response.status_code == 200, response.text
        data: list[dict[str, Any]] = response.json()["data"]
        return data

    # The receiver answered; the notifier records the attempt just after.
    deliveries = await listed()
    async with asyncio.timeout(10):
        while not all(d["status"] == "delivered" for d in deliveries):
            await asyncio.sleep(0.1)
            deliveries = await listed()
    [delivery] = deliveries
    assert delivery["id"] == call["headers"]["X-Comet-Delivery"]
    assert [(a["number"], a["http_status"]) for a in delivery["attempts"]] == [(1, 500), (2, 500), (3, 204)]
    assert delivery["attempts"][0]["error"].startswith("HTTP 500")
    assert delivery["attempts"][-1]["error"] is None
    assert all(a["duration_ms"] >= 0 for a in delivery["attempts"])
    none_for_slack = await api_client.get(
        f"/api/v1/projects/{project_id}/integrations/{slack['id']}/deliveries", headers=headers
    )
    assert none_for_slack.json() == {"data": [], "next_cursor": None}


@pytest.mark.timeout(120)
async def test_a_deploying_run_announces_its_deployment_start_and_finish_once_each(
    platform: Platform,
    sessions: async_sessionmaker[AsyncSession],
    namespace: str,
    tmp_path: Path,
    api_client: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    receiver.failures = 0
    deploying = "name: ci\nstages:\n  build: {run: echo built}\n  ship: {run: echo shipped, environment: staging, needs: [build]}\n"
    repo, sha = make_repo(tmp_path / "repo", {".comet.yml": deploying})
    project_id = await add_project(sessions, str(repo))
    headers = await owner_headers(api_client, sessions, project_id)
    hook = await _integration(
        api_client,
        headers,
        project_id,
        {
            "kind": "webhook",
            "url": f"{receiver.url}/hooks",
            "events": ["deployment.started", "deployment.finished"],
        },
    )
    run_id = await start_run(sessions, Topics(namespace), project_id, sha=sha)
    assert (await wait_for_run(sessions, run_id)).status == "succeeded"
    await _until("both deployment notifications", lambda: len(receiver.delivered("/hooks")) >= 2)
    await asyncio.sleep(1.0)  # a duplicate would be sent by now

    # Deliveries are sent side by side (like GitHub's, in no promised order): each names its event.
    calls = sorted(
        receiver.delivered("/hooks"), key=lambda c: c["headers"]["X-Comet-Event"] != "deployment.started"
    )
    assert [c["headers"]["X-Comet-Event"] for c in calls] == ["deployment.started", "deployment.finished"]
    now = int(time.time())
    assert all(
        verify_signature(hook["secret"], c["headers"]["X-Comet-Signature"], c["body"], now=now) for c in calls
    )
    started, finished = (json.loads(c["body"])["data"] for c in calls)
    assert started["id"] == finished["id"] is not None, "the deployment's own id (its row)"
    assert (started["status"], finished["status"]) == ("in_progress", "succeeded")
    assert (finished["environment"], finished["stage"], finished["sha"]) == ("staging", "ship", sha)
    assert finished["run_id"] == str(run_id)
    assert finished["finished_at"] is not None


@pytest.mark.timeout(120)
async def test_a_failed_run_reaches_slack_and_a_webhook_that_filters_it_out_gets_nothing(
    platform: Platform,
    sessions: async_sessionmaker[AsyncSession],
    namespace: str,
    tmp_path: Path,
    api_client: httpx.AsyncClient,
) -> None:
    receiver = Receiver()
    receiver.thread.start()
    try:
        repo, sha = make_repo(tmp_path / "repo", {".comet.yml": "name: ci\nstages:\n  unit: {run: exit 3}\n"})
        name = f"shop-{uuid.uuid4().hex[:6]}"
        project_id = await add_project(sessions, str(repo), name=name)
        headers = await owner_headers(api_client, sessions, project_id)
        slack = await _integration(
            api_client,
            headers,
            project_id,
            {"kind": "slack", "url": f"{receiver.url}/slack", "events": ["run.failed", "run.finished"]},
        )
        quiet = await _integration(
            api_client,
            headers,
            project_id,
            {"kind": "webhook", "url": f"{receiver.url}/quiet", "events": ["deployment.started"]},
        )
        run_id = await start_run(sessions, Topics(namespace), project_id, sha=sha)
        assert (await wait_for_run(sessions, run_id)).status == "failed"
        await _until("the Slack message", lambda: receiver.delivered("/slack"))
        await asyncio.sleep(1.0)  # anything else queued for this run would be sent by now

        [call] = receiver.calls
        assert call["headers"]["X-Comet-Event"] == "run.failed", "a failed run is sent once, as run.failed"
        assert "X-Comet-Signature" not in call["headers"]
        message = json.loads(call["body"])
        assert message["text"] == f"{name}: run failed on main @ {sha[:8]} — stage unit failed: exit code 3"
        assert message["blocks"][0]["type"] == "section"
        assert f"/api/v1/runs/{run_id}|View the run>" in message["blocks"][0]["text"]["text"]
        listed = await api_client.get(
            f"/api/v1/projects/{project_id}/integrations/{quiet['id']}/deliveries", headers=headers
        )
        assert listed.json()["data"] == []
        assert slack["events"] == ["run.failed", "run.finished"]
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


async def _attempt_with_flaky_cases(
    sessions: async_sessionmaker[AsyncSession], project_id: uuid.UUID, run_id: uuid.UUID, keys: list[str]
) -> Received:
    """A finished attempt of stage `unit` in the run, whose cases `keys` were found flaky: the
    `attempt.finished` event the notifier receives for it."""
    async with sessions.begin() as session:
        stage = Stage(
            run_id=run_id,
            name="unit",
            base_name="unit",
            position=0,
            matrix={},
            status="succeeded",
            needs=[],
            pool="default",
            spec={},
            attempt=1,
        )
        session.add(stage)
        await session.flush()
        attempt = StageAttempt(run_id=run_id, stage_id=stage.id, number=1, status="succeeded", pool="default")
        session.add(attempt)
        await session.flush()
        for key in keys:
            session.add(
                TestCase(
                    attempt_id=attempt.id,
                    project_id=project_id,
                    run_id=run_id,
                    stage_id=stage.id,
                    stage="unit",
                    attempt=1,
                    ref="refs/heads/main",
                    sha=None,
                    key=key,
                    name=f"test_{key}",
                    classname="tests.test_shop",
                    status="passed",
                    duration_s=0.1,
                    flaky=True,
                )
            )
    finished = AttemptFinished(
        run_id=run_id,
        stage_id=stage.id,
        attempt_id=attempt.id,
        stage="unit",
        number=1,
        status="succeeded",
        finished_at=datetime.now(UTC),
        tests=TestCounts(total=len(keys), passed=len(keys), flaky=len(keys)),
    )
    return Received(new_envelope(finished, key=str(run_id)), "stage-results", 0, 0)


async def _project_and_run(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, project_id: uuid.UUID | None = None
) -> tuple[uuid.UUID, uuid.UUID]:
    """A running run of `project_id` (default: a new project)."""
    project_id = project_id or await add_project(sessions, str(tmp_path / "nowhere.git"))
    async with sessions.begin() as session:
        number = len((await session.scalars(select(Run.id).where(Run.project_id == project_id))).all()) + 1
        run = Run(
            project_id=project_id,
            number=number,
            status="running",
            ref="refs/heads/main",
            trigger={"kind": "api"},
        )
        session.add(run)
        await session.flush()
        return project_id, run.id


async def _flaky_test_webhook(
    sessions: async_sessionmaker[AsyncSession], project_id: uuid.UUID
) -> Integration:
    """A webhook integration of the project that follows `test.flaky` (https: nothing is sent)."""
    async with sessions.begin() as session:
        return await notifications.create(
            session,
            SecretBox(TEST_SECRET_KEY),
            project_id=project_id,
            kind="webhook",
            url="https://hooks.example.com/comet",
            shown_url="https://hooks.example.com/comet",
            events=["test.flaky"],
            secret="s3cret",
        )


def _notifier(
    sessions: async_sessionmaker[AsyncSession], allow: OutboundAllow, timeout_s: float = 10.0
) -> Notifier:
    return Notifier(
        sessions,
        SecretBox(TEST_SECRET_KEY),
        consumer_name=f"notifier-test-{uuid.uuid4().hex[:8]}",
        public_url="https://ci.example.com",
        allow=allow,
        timeout_s=timeout_s,
    )


async def _deliveries(
    sessions: async_sessionmaker[AsyncSession], integration_id: uuid.UUID
) -> list[NotificationDelivery]:
    async with sessions() as session:
        rows = await session.scalars(
            select(NotificationDelivery).where(NotificationDelivery.integration_id == integration_id)
        )
        return list(rows.all())


async def test_a_test_newly_found_flaky_is_announced_once_per_project(
    own_sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    sessions = own_sessions  # a database of its own: the notifier sends every due delivery in it
    project_id, run_id = await _project_and_run(sessions, tmp_path)
    hook = await _flaky_test_webhook(sessions, project_id)
    notifier = _notifier(sessions, OutboundAllow())

    first = await _attempt_with_flaky_cases(sessions, project_id, run_id, ["k-checkout", "k-cart"])
    await notifier.handle([first])
    await notifier.handle([first])  # redelivered by Kafka: the inbox makes it a no-op
    queued = await _deliveries(sessions, hook.id)
    assert sorted(json.loads(d.body)["data"]["key"] for d in queued) == ["k-cart", "k-checkout"]
    assert {d.event for d in queued} == {"test.flaky"}

    _, later_run = await _project_and_run(sessions, tmp_path, project_id)
    again = await _attempt_with_flaky_cases(sessions, project_id, later_run, ["k-cart", "k-payment"])
    await notifier.handle([again])
    keys = sorted(json.loads(d.body)["data"]["key"] for d in await _deliveries(sessions, hook.id))
    assert keys == ["k-cart", "k-checkout", "k-payment"], "k-cart was announced already"


async def test_a_target_refused_at_send_time_is_not_called_and_the_refusal_is_recorded(
    own_sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    sessions = own_sessions  # a database of its own: the notifier sends every due delivery in it
    receiver = Receiver()
    receiver.thread.start()
    try:
        project_id, run_id = await _project_and_run(sessions, tmp_path)
        async with sessions.begin() as session:
            hook = await notifications.create(
                session,
                SecretBox(TEST_SECRET_KEY),
                project_id=project_id,
                kind="webhook",
                url=f"{receiver.url}/hooks",
                shown_url=f"{receiver.url}/hooks",
                events=["test.flaky"],
                secret="s3cret",
            )
        # Allowed when it was created; the allow-list no longer names it now.
        created_under = _notifier(sessions, parse_allow("127.0.0.1"))
        await created_under.handle([await _attempt_with_flaky_cases(sessions, project_id, run_id, ["k-1"])])
        sender = _notifier(sessions, OutboundAllow())
        async with httpx.AsyncClient() as client:
            assert await sender.send_due(client) == 0
        [delivery] = await _deliveries(sessions, hook.id)
        assert (delivery.status, delivery.attempts) == ("pending", 1)
        async with sessions() as session:
            [attempt] = (
                await session.scalars(
                    select(NotificationAttempt).where(NotificationAttempt.delivery_id == delivery.id)
                )
            ).all()
        assert attempt.http_status is None
        assert attempt.error == (
            "refused: the URL must use https (http is allowed only for hosts COMET_OUTBOUND_ALLOW names; "
            "127.0.0.1 is not one)"
        )
        assert receiver.calls == []
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


async def test_deployment_events_reach_the_receiver_signed_with_the_deployment_fields(
    own_sessions: async_sessionmaker[AsyncSession], tmp_path: Path, receiver: Receiver
) -> None:
    sessions = own_sessions  # a database of its own: the notifier sends every due delivery in it
    receiver.failures = 0
    project_id, run_id = await _project_and_run(sessions, tmp_path)
    async with sessions.begin() as session:
        hook = await notifications.create(
            session,
            SecretBox(TEST_SECRET_KEY),
            project_id=project_id,
            kind="webhook",
            url=f"{receiver.url}/hooks",
            shown_url=f"{receiver.url}/hooks",
            events=["deployment.started", "deployment.finished"],
            secret="s3cret",
        )
    notifier = _notifier(sessions, parse_allow("127.0.0.1"))
    deployment_id = uuid.uuid4()

    def moved(status: str, previous: str | None) -> Received:
        change = DeploymentStatusChanged(
            deployment_id=deployment_id,
            project_id=project_id,
            run_id=run_id,
            stage="deploy",
            environment="production",
            status=status,
            previous=previous,
            sha="d" * 40,
            ref="refs/heads/main",
            url="https://shop.example.com",
            at=datetime.now(UTC),
            started_at=datetime.now(UTC),
        )
        return Received(new_envelope(change, key=str(run_id)), "run-status", 0, 0)

    await notifier.handle(
        [moved("waiting", None), moved("queued", "waiting"), moved("in_progress", "queued")]
    )
    await notifier.handle([moved("succeeded", "in_progress")])
    async with httpx.AsyncClient() as client:
        assert await notifier.send_due(client) == 2
    calls = receiver.delivered("/hooks")
    now = int(time.time())
    assert all(
        verify_signature("s3cret", c["headers"]["X-Comet-Signature"], c["body"], now=now) for c in calls
    )
    bodies = {c["headers"]["X-Comet-Event"]: json.loads(c["body"])["data"] for c in calls}
    assert set(bodies) == {"deployment.started", "deployment.finished"}
    finished = bodies["deployment.finished"]
    assert finished["id"] == str(deployment_id)
    assert (finished["environment"], finished["status"], finished["sha"]) == (
        "production",
        "succeeded",
        "d" * 40,
    )
    assert finished["url"] == "https://shop.example.com"
    assert finished["run_url"] == f"https://ci.example.com/api/v1/runs/{run_id}"
    assert {d.status for d in await _deliveries(sessions, hook.id)} == {"delivered"}


async def test_a_receiver_that_never_answers_costs_one_bounded_attempt(
    own_sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    sessions = own_sessions  # a database of its own: the notifier sends every due delivery in it
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accepts, reads nothing, never answers

    silent = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        project_id, run_id = await _project_and_run(sessions, tmp_path)
        async with sessions.begin() as session:
            hook = await notifications.create(
                session,
                SecretBox(TEST_SECRET_KEY),
                project_id=project_id,
                kind="webhook",
                url=f"http://127.0.0.1:{port}/hooks",
                shown_url=f"http://127.0.0.1:{port}/hooks",
                events=["test.flaky"],
                secret="s3cret",
            )
        notifier = _notifier(sessions, parse_allow("127.0.0.1"), timeout_s=1.0)
        await notifier.handle([await _attempt_with_flaky_cases(sessions, project_id, run_id, ["k-slow"])])
        async with httpx.AsyncClient() as client, asyncio.timeout(10):
            assert await notifier.send_due(client) == 0
        [delivery] = await _deliveries(sessions, hook.id)
        assert (delivery.status, delivery.attempts, delivery.last_http_status) == ("pending", 1, None)
        assert delivery.last_error in ("no answer within 1s", "ReadTimeout")
    finally:
        for writer in held:
            writer.close()
        silent.close()
        await silent.wait_closed()


async def test_an_event_of_a_project_nobody_follows_writes_nothing_and_one_followed_later_is_announced(
    own_sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    sessions = own_sessions
    project_id, run_id = await _project_and_run(sessions, tmp_path)
    notifier = _notifier(sessions, OutboundAllow())
    unfollowed = await _attempt_with_flaky_cases(sessions, project_id, run_id, ["k-1"])

    await notifier.handle([unfollowed])

    async with sessions() as session:
        inbox = await session.scalar(
            text("SELECT count(*) FROM inbox WHERE consumer = :c"), {"c": notifier._consumer}
        )
    assert inbox == 0, "an event nobody follows claimed an inbox row"

    hook = await _flaky_test_webhook(sessions, project_id)
    _, later_run = await _project_and_run(sessions, tmp_path, project_id)
    followed = await _attempt_with_flaky_cases(sessions, project_id, later_run, ["k-2"])
    await notifier.handle([followed])
    await notifier.handle([followed])  # redelivered: now claimed, so a no-op

    assert [json.loads(d.body)["data"]["key"] for d in await _deliveries(sessions, hook.id)] == ["k-2"]
