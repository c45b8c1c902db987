"""Reporting run states back to the Git host as commit statuses.

A consumer of the run-status topic queues a report per run state change (deduplicated by the
inbox), its description carrying the run's test summary when there is one; a sender delivers due
reports with backoff. Failures are recorded on the report and never touch the run: a Git host
being down cannot block or fail a pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.crypto import SecretBox
from db.repositories import commit_statuses as reports
from db.repositories import tests
from events.consumer import Received
from events.inbox import claim_new
from orchestrator.commit_status import MAX_ATTEMPTS, auth_headers, backoff_s, describe, status_request
from schemas.api.tests import ResultSummary
from schemas.events import RunStatusChanged
from schemas.states import RunStatus

log = structlog.get_logger(__name__)


class StatusReporter:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        box: SecretBox,
        *,
        consumer_name: str,
        public_url: str,
        interval_s: float = 0.5,
        timeout_s: float = 10.0,
    ) -> None:
        self._sessions = sessions
        self._box = box
        self._consumer = consumer_name
        self._public_url = public_url.rstrip("/")
        self._interval = interval_s
        self._timeout = timeout_s
        self._wake = asyncio.Event()
        self._stopping = False

    async def handle(self, batch: list[Received]) -> None:
        """Queue one report per run state change seen for the first time, for runs with a commit to
        report on. Other events, and changes of runs with no target (triggered through the API
        without a Git host behind them), write nothing: not even an inbox row."""
        changes = [r for r in batch if r.envelope.type == RunStatusChanged.TYPE]
        if not changes:
            return
        queued = False
        async with self._sessions.begin() as session:
            parsed = [(r, RunStatusChanged.model_validate(r.envelope.payload)) for r in changes]
            targets = await reports.targets_for(session, self._box, [change.run_id for _, change in parsed])
            targeted = [
                (r, change, targets[change.run_id]) for r, change in parsed if change.run_id in targets
            ]
            if not targeted:
                return
            fresh = await claim_new(session, self._consumer, [r.envelope.event_id for r, _, _ in targeted])
            for r, change, target in targeted:
                if r.envelope.event_id not in fresh:
                    continue
                status = RunStatus(change.status)
                request = status_request(
                    target.provider,
                    api_url=target.api_url,
                    repo=target.repo,
                    sha=target.sha,
                    status=status,
                    context=f"comet/{target.pipeline}",
                    target_url=f"{self._public_url}/api/v1/runs/{change.run_id}",
                    description=describe(
                        status, change.failure_reason, await _tests_of(session, change.run_id)
                    ),
                )
                await reports.enqueue(
                    session,
                    run_id=change.run_id,
                    provider=target.provider,
                    state=request.state,
                    request=request.as_dict(),
                )
                queued = True
        if queued:
            self._wake.set()

    async def send_due(self, client: httpx.AsyncClient) -> int:
        sent = 0
        async with self._sessions.begin() as session:
            for row in await reports.due(session):
                target = await reports.target_for(session, self._box, row.run_id)
                if target is None:
                    await reports.mark_failed(
                        session,
                        row.id,
                        http_status=None,
                        error="the commit-status integration was removed",
                        delay_s=0,
                        max_attempts=0,
                    )
                    continue
                request = row.request
                try:
                    response = await client.request(
                        request["method"],
                        request["url"],
                        json=request.get("json"),
                        params=request.get("params") or None,
                        headers=auth_headers(target.provider, target.token),
                        timeout=self._timeout,
                    )
                except httpx.HTTPError as exc:
                    await self._failed(session, row, None, f"{type(exc).__name__}: {exc}")
                    continue
                if response.is_success:
                    await reports.mark_delivered(session, row.id, response.status_code)
                    sent += 1
                else:
                    await self._failed(
                        session, row, response.status_code, response.text[:500] or response.reason_phrase
                    )
        return sent

    async def _failed(self, session: AsyncSession, row: object, http_status: int | None, error: str) -> None:
        attempts = int(row.attempts) + 1  # type: ignore[attr-defined]
        log.warning("commit status not delivered", run_id=str(row.run_id), attempts=attempts, error=error)  # type: ignore[attr-defined]
        await reports.mark_failed(
            session,
            row.id,  # type: ignore[attr-defined]
            http_status=http_status,
            error=error,
            delay_s=backoff_s(attempts),
            max_attempts=MAX_ATTEMPTS,
        )

    async def run(self) -> None:
        async with httpx.AsyncClient(follow_redirects=False) as client:
            while not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._interval)
                self._wake.clear()
                try:
                    await self.send_due(client)
                except Exception as exc:  # database blips: try again next tick
                    log.warning("commit status sender failed; retrying", error=repr(exc))

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()


async def _tests_of(session: AsyncSession, run_id: uuid.UUID) -> ResultSummary | None:
    """The run's test summary so far (its stages' current attempts), None without test reports."""
    return ResultSummary.of_stored(r.summary for r in await tests.stage_results(session, run_id))
