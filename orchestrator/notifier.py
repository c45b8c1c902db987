"""Outbound notifications (`webhook`, `slack` integrations), in the orchestrator process.

A consumer of the run-status and stage-result topics turns each event seen for the first time
(the inbox) — run, stage and deployment status changes, finished attempts — into notices
(`orchestrator/notices.py`) and queues one delivery per integration
whose filter wants it, with the body rendered once. A sender claims due deliveries with a lease,
checks each target again (https, no private address unless `COMET_OUTBOUND_ALLOW` names it — DNS
may have changed since the integration was created), sends them concurrently pinned to the
checked address, and records every attempt. Failures back off exponentially and never touch a
run: a receiver being down cannot block or fail a pipeline (docs/decisions/0024).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import UTC, datetime

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.crypto import DecryptionError, SecretBox
from db.models import Run
from db.repositories import notifications as repo
from events.consumer import Received
from events.inbox import claim_new
from orchestrator.commit_status import backoff_s
from orchestrator.notices import (
    CaseFacts,
    RunFacts,
    StageFacts,
    for_deployment_status,
    for_flaky_cases,
    for_run_status,
    for_stage_status,
)
from orchestrator.notification_format import body_for, request_headers
from orchestrator.outbound import pinned_request, resolve
from schemas.events import AttemptFinished, DeploymentStatusChanged, RunStatusChanged, StageStatusChanged
from schemas.notifications import Notice
from schemas.outbound import OutboundAllow, OutboundRefused

log = structlog.get_logger(__name__)

MAX_ATTEMPTS = 10
"""Tries per delivery: with `backoff_s` (1 s, 2 s, 4 s, … capped at 5 min), about 13 minutes."""

WANTED = frozenset(
    {RunStatusChanged.TYPE, StageStatusChanged.TYPE, DeploymentStatusChanged.TYPE, AttemptFinished.TYPE}
)


def _run_id(received: Received) -> uuid.UUID:
    return uuid.UUID(str(received.envelope.payload["run_id"]))


def _run_facts(run: Run, project: str) -> RunFacts:
    return RunFacts(
        id=run.id,
        project_id=run.project_id,
        project=project,
        ref=run.ref,
        sha=run.sha,
        pipeline=run.pipeline_name,
        trigger=str((run.trigger or {}).get("kind") or "unknown"),
        created_at=run.created_at,
        finished_at=run.finished_at,
    )


class Notifier:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        box: SecretBox,
        *,
        consumer_name: str,
        public_url: str,
        allow: OutboundAllow,
        interval_s: float = 0.5,
        timeout_s: float = 10.0,
        batch: int = 50,
        concurrency: int = 16,
    ) -> None:
        self._sessions = sessions
        self._box = box
        self._consumer = consumer_name
        self._public_url = public_url
        self._allow = allow
        self._interval = interval_s
        self._timeout = timeout_s
        self._batch = batch
        self._limit = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._stopping = False

    # -- queueing ----------------------------------------------------------------------------
    async def handle(self, batch: list[Received]) -> None:
        """Queue the deliveries of the notices that events seen for the first time give."""
        wanted = [r for r in batch if r.envelope.type in WANTED]
        if not wanted:
            return
        queued = 0
        async with self._sessions.begin() as session:
            followers = await repo.run_subscribers(session, [_run_id(r) for r in wanted])
            if not followers:
                return
            runs = await repo.run_with_project(session, list(followers))
            # Only events of followed runs are claimed: the others write nothing, not even an
            # inbox row (a project followed later gets the notices of the events after that).
            followed = [(r, found) for r in wanted if (found := runs.get(_run_id(r))) is not None]
            if not followed:
                return
            fresh = await claim_new(session, self._consumer, [r.envelope.event_id for r, _ in followed])
            for r, found in followed:
                if r.envelope.event_id not in fresh:
                    continue
                notices = await self._notices(session, r, _run_facts(*found))
                queued += await self._enqueue(session, notices, followers[found[0].id])
        if queued:
            self._wake.set()

    async def _notices(self, session: AsyncSession, received: Received, run: RunFacts) -> list[Notice]:
        envelope = received.envelope
        if envelope.type == RunStatusChanged.TYPE:
            change = RunStatusChanged.model_validate(envelope.payload)
            return for_run_status(envelope.event_id, change, run, self._public_url)
        if envelope.type == DeploymentStatusChanged.TYPE:
            deployed = DeploymentStatusChanged.model_validate(envelope.payload)
            required, created_at = await repo.deployment_facts(session, deployed.deployment_id)
            return for_deployment_status(
                envelope.event_id, deployed, run, required, created_at, self._public_url
            )
        if envelope.type == StageStatusChanged.TYPE:
            moved = StageStatusChanged.model_validate(envelope.payload)
            stage, has_deployments = await repo.stage_of(session, run.id, moved.stage)
            if stage is None:
                return []
            facts = StageFacts(
                name=stage.name,
                environment=(stage.spec or {}).get("environment"),
                status=moved.status,
                queued_at=stage.queued_at,
                started_at=stage.started_at,
                finished_at=stage.finished_at,
            )
            return for_stage_status(envelope.event_id, moved, run, facts, has_deployments, self._public_url)
        finished = AttemptFinished.model_validate(envelope.payload)
        if finished.tests is None or finished.tests.flaky <= 0:
            return []
        cases = [
            CaseFacts(key=c.key, name=c.name, classname=c.classname, file=c.file, stage=c.stage)
            for c in await repo.newly_flaky(session, finished.attempt_id)
        ]
        return for_flaky_cases(envelope.event_id, finished.finished_at, run, cases, self._public_url)

    async def _enqueue(
        self, session: AsyncSession, notices: list[Notice], followers: list[repo.Subscriber]
    ) -> int:
        rows = []
        for notice in notices:
            for follower in followers:
                event = notice.for_filter(follower.events)
                if event is None:
                    continue
                rows.append(
                    {
                        "integration_id": follower.id,
                        "project_id": notice.project_id,
                        "event": event,
                        "source_event_id": notice.event_id,
                        "body": body_for(follower.kind, event, notice),
                    }
                )
        await repo.enqueue(session, rows)
        return len(rows)

    # -- sending -----------------------------------------------------------------------------
    async def send_due(self, client: httpx.AsyncClient) -> int:
        """Send what is due now; returns how many were delivered."""
        lease = self._timeout + 30.0
        async with self._sessions.begin() as session:
            due = await repo.claim_due(session, limit=self._batch, lease_s=lease)
        if not due:
            return 0
        outcomes = await asyncio.gather(*(self._send(client, d) for d in due))
        async with self._sessions.begin() as session:
            for delivery, (started, duration_ms, status, error) in zip(due, outcomes, strict=True):
                if error is not None:
                    log.warning(
                        "notification not delivered",
                        delivery_id=str(delivery.id),
                        integration_id=str(delivery.integration_id),
                        attempt=delivery.attempts + 1,
                        error=error,
                    )
                await repo.record_attempt(
                    session,
                    delivery,
                    started_at=started,
                    duration_ms=duration_ms,
                    http_status=status,
                    error=error,
                    delay_s=backoff_s(delivery.attempts + 1),
                    max_attempts=MAX_ATTEMPTS,
                )
        return sum(1 for _, _, _, error in outcomes if error is None)

    async def _send(
        self, client: httpx.AsyncClient, delivery: repo.Due
    ) -> tuple[datetime, int, int | None, str | None]:
        """One attempt: (started at, duration in ms, HTTP status, error or None when delivered)."""
        async with self._limit:
            started, clock = datetime.now(UTC), time.perf_counter()
            status: int | None = None
            if delivery.ciphertext is None:
                return started, 0, None, "the integration has no stored target"
            try:
                target = repo.open_target(self._box, delivery.integration_id, delivery.ciphertext)
                resolved = await resolve(target.url, self._allow)
                headers = request_headers(
                    kind=delivery.kind,
                    event=delivery.event,
                    delivery_id=delivery.id,
                    secret=target.secret,
                    body=delivery.body,
                    now=int(time.time()),
                )
                request = pinned_request(
                    client, resolved, content=delivery.body, headers=headers, timeout_s=self._timeout
                )
                # The whole exchange is bounded (httpx's timeout is per phase: a receiver dripping
                # bytes could hold it for ever), and so is what is read of the answer.
                async with asyncio.timeout(self._timeout):
                    response = await client.send(request, stream=True)
                    try:
                        status = response.status_code
                        error = None if response.is_success else _answer(response, await _head(response))
                    finally:
                        await response.aclose()
            except OutboundRefused as exc:
                error = f"refused: the URL {exc}"
            except DecryptionError as exc:
                error = f"the integration's target cannot be decrypted ({exc})"
            except TimeoutError:
                error = f"no answer within {self._timeout:g}s"
            except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return started, round((time.perf_counter() - clock) * 1000), status, error

    async def run(self) -> None:
        async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
            while not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._interval)
                self._wake.clear()
                try:
                    while await self.send_due(client) >= self._batch and not self._stopping:
                        pass
                except Exception as exc:  # database blips: try again next tick
                    log.warning("notification sender failed; retrying", error=repr(exc))

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()


ANSWER_BYTES = 1024
"""How much of a failed answer's body is read (and 300 characters of it kept)."""


async def _head(response: httpx.Response) -> str:
    kept = b""
    async for chunk in response.aiter_bytes():
        kept += chunk
        if len(kept) >= ANSWER_BYTES:
            break
    return kept[:ANSWER_BYTES].decode("utf-8", "replace")


def _answer(response: httpx.Response, head: str) -> str:
    text = head[:300].strip()
    reason = response.reason_phrase or "error"
    if response.is_redirect:
        return f"HTTP {response.status_code} {reason} (redirects are not followed)"
    return f"HTTP {response.status_code} {reason}" + (f": {text}" if text else "")
