"""`comet worker`: consumes its pool's dispatch topic, claims attempts up to `concurrency` at a
time, runs each in a task (the consumer never waits for a stage: it commits the offset once the
claim is committed and pauses while every slot is busy), heartbeats leases, obeys cancellation
(`LISTEN comet_cancel` plus the heartbeat's flag) and drains on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import uuid
from pathlib import Path

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from config.settings import WorkerSettings
from db.engine import asyncpg_dsn
from db.repositories import attempts as attempts_repo
from db.repositories import workers as workers_repo
from events.backbone import Backbone
from events.consumer import EventConsumer, Received
from events.deadletters import DeadLetterSink
from events.envelope import Envelope, new_envelope
from events.faults import retry_transient
from events.listen import listen_forever
from events.outbox import PendingEvent, add_events
from schemas.events import AttemptDispatched, AttemptStarted
from workers.git import MirrorCache
from workers.runner import AttemptRunner, RunningAttempt
from workers.workspace import Workspaces

log = structlog.get_logger(__name__)


class WorkerService:
    def __init__(self, settings: WorkerSettings, worker_id: str | None = None) -> None:
        self.settings = settings
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.backbone = Backbone(settings, "worker", relay_enabled=settings.relay)
        b = self.backbone
        self.workspaces = Workspaces(Path(settings.workspace_dir))
        self.runner = AttemptRunner(
            settings,
            b.sessions,
            b.topics,
            MirrorCache(Path(settings.git_cache_dir)),
            self.workspaces,
            self.worker_id,
            on_commit=b.wake_relay,
        )
        self.running: dict[uuid.UUID, RunningAttempt] = {}
        self._claiming = asyncio.Lock()
        self._work_waiting = asyncio.Event()
        # Whether queued work may be waiting for a slot: a freed slot sweeps only then (a sweep
        # that finds nothing is a transaction for nothing, and most freed slots find nothing).
        self._backlog = True
        self._tasks: set[asyncio.Task[None]] = set()
        self.draining = False
        self.consumer = EventConsumer(
            name=f"worker-{settings.pool}",
            topics=[b.topics.dispatch(settings.pool)],
            group_id=b.topics.worker_group(settings.pool),
            bootstrap_servers=settings.kafka_bootstrap_servers,
            handler=self._on_dispatch,
            dead_letters=DeadLetterSink(b.sessions, b.topics, b.topics.worker_group(settings.pool)),
            capacity=self._free_slots,
            max_batch=settings.concurrency,
            instance_id=settings.instance_id,
            session_timeout_ms=int(settings.kafka_session_timeout_s * 1000),
        )

    def _free_slots(self) -> int:
        return 0 if self.draining else self.settings.concurrency - len(self.running)

    async def _on_dispatch(self, batch: list[Received]) -> None:
        """Claim the dispatched attempts in one transaction, with their `attempt.started` events,
        then run each in a task of its own. The consumer sizes batches to the free slots; what no
        longer fits when the claim comes is left queued, for the next sweep (`_backlog`)."""
        dispatched: dict[uuid.UUID, Envelope] = {}
        for received in batch:
            payload = received.envelope.typed()
            # An attempt this worker already runs was claimed by its sweep (woken by the
            # orchestrator's NOTIFY before the dispatch arrived): its claim would find nothing.
            if isinstance(payload, AttemptDispatched) and payload.attempt_id not in self.running:
                dispatched.setdefault(payload.attempt_id, received.envelope)
        if not dispatched:
            return
        async with self._claiming:
            # The sweep may have taken a slot since the batch was sized: the rest of the batch stays
            # queued, and is swept up by whichever worker is free first.
            ids = list(dispatched)[: max(self._free_slots(), 0)]
            if len(ids) < len(dispatched):
                self._backlog = True
            if not ids:
                return
            async with self.backbone.sessions.begin() as session:
                # Redelivered dispatches find their attempt claimed, finished or cancelled: not returned.
                claims = await attempts_repo.claim_many(
                    session, ids, self.worker_id, self.settings.lease_s, self.settings.labels
                )
                attempts = await self._record_starts(session, claims, dispatched)
            self._start(attempts)

    async def _claim_queued(self) -> None:
        """Claim, oldest first, attempts of this pool queued in Postgres, up to the free slots:
        woken by `NOTIFY comet_dispatch` as soon as the orchestrator's commit queues one, when a
        slot frees up while work may be waiting for it (`_backlog`), and every `sweep_s` in case a
        notification was missed. Postgres is the queue; the dispatch event on Kafka is a second,
        ordered way to the same claim. So a free worker never waits behind a busy one's
        partitions, nor for a dead one's session timeout."""
        while True:
            # asyncio.timeout, not wait_for: under 3.11 wait_for can swallow the task's own
            # cancellation when the event is set at the same moment (the worker then never stops).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.sweep_s):
                    await self._work_waiting.wait()
            self._work_waiting.clear()
            try:
                await self._sweep_once()
            except Exception as exc:
                log.warning("claiming queued attempts failed", error=repr(exc))
                self._backlog = True

    async def _sweep_once(self) -> None:
        """One sweep: claim up to the free slots, and note whether more may be waiting."""
        async with self._claiming:
            limit = self._free_slots()
            if limit <= 0:
                self._backlog = True  # woken for work there is no slot for: look when one frees up
                return
            async with self.backbone.sessions.begin() as session:
                claims = await attempts_repo.claim_stale(
                    session,
                    self.settings.pool,
                    self.worker_id,
                    self.settings.lease_s,
                    older_than_s=self.settings.stale_dispatch_s,
                    limit=limit,
                    labels=self.settings.labels,
                )
                attempts = await self._record_starts(session, claims, {})
            self._start(attempts)
            # Fewer than the free slots: nothing else is queued for this worker now, and work
            # queued later wakes it by NOTIFY (or the next `sweep_s`).
            self._backlog = len(claims) >= limit

    def _on_dispatch_notice(self, pool: str) -> None:
        if pool == self.settings.pool:
            self._work_waiting.set()

    async def _record_starts(
        self, session: AsyncSession, claims: list[attempts_repo.Claim], causes: dict[uuid.UUID, Envelope]
    ) -> list[RunningAttempt]:
        """In the claim's transaction: the claims' `attempt.started` events, and their secrets."""
        events = []
        for claim in claims:
            cause = causes.get(claim.attempt_id)
            started = AttemptStarted(
                run_id=claim.run_id,
                stage_id=claim.stage_id,
                attempt_id=claim.attempt_id,
                stage=claim.stage,
                number=claim.number,
                worker_id=self.worker_id,
                fencing_token=claim.fencing_token,
                started_at=claim.started_at,
            )
            envelope = new_envelope(
                started,
                key=str(claim.run_id),
                correlation_id=cause.correlation_id if cause else None,
                causation_id=str(cause.event_id) if cause else None,
            )
            events.append(PendingEvent(self.backbone.topics.stage_results, envelope))
        await add_events(session, events)
        attempts = [RunningAttempt(claim) for claim in claims]
        await self.runner.prefetch_secrets(session, attempts)
        return attempts

    def _start(self, attempts: list[RunningAttempt]) -> None:
        if attempts:
            self.backbone.wake_relay()
        for attempt in attempts:
            claim = attempt.claim
            self.running[claim.attempt_id] = attempt
            with structlog.contextvars.bound_contextvars(run_id=str(claim.run_id), stage=claim.stage):
                log.info("attempt claimed", attempt=claim.number, token=claim.fencing_token)
            task = asyncio.create_task(self._run(attempt), name=f"attempt-{claim.attempt_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, attempt: RunningAttempt) -> None:
        try:
            with structlog.contextvars.bound_contextvars(
                run_id=str(attempt.claim.run_id), stage=attempt.claim.stage
            ):
                await self.runner.run(attempt)
        except Exception as exc:
            log.exception("attempt crashed in the worker", error=repr(exc))
        finally:
            self.running.pop(attempt.claim.attempt_id, None)
            self.consumer.capacity_changed()
            self._slot_freed()

    def _slot_freed(self) -> None:
        """A slot is free: take what waits, if anything may."""
        if self._backlog:
            self._work_waiting.set()

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            try:
                await self.heartbeat_once()
            except Exception as exc:
                log.warning("heartbeat failed", error=repr(exc))

    async def heartbeat_once(self) -> None:
        # Only the attempts in this snapshot are judged: one claimed while the UPDATE was in flight
        # is not in `held`, yet its lease is fine.
        snapshot = dict(self.running)
        leases = [(a.claim.attempt_id, a.claim.fencing_token) for a in snapshot.values()]
        async with self.backbone.sessions.begin() as session:
            held = await attempts_repo.heartbeat(session, leases, self.settings.lease_s)
            await workers_repo.beat(
                session,
                self.worker_id,
                busy=len(self.running),
                status="draining" if self.draining else "active",
            )
        for attempt_id, attempt in snapshot.items():
            lease = held.get(attempt_id)
            if lease is None and (attempt_id not in self.running or attempt.finishing):
                continue  # it finished, or its result was committed, while the heartbeat was in flight
            if lease is None:
                # Our lease expired (we were paused or cut off): someone else may run it now.
                log.warning(
                    "lease lost; stopping the stage", stage=attempt.claim.stage, attempt=attempt.claim.number
                )
                attempt.lease_lost = True
                attempt.cancel.set()
            elif lease.cancel_requested:
                attempt.cancel.set()

    async def _listen_cancels(self) -> None:
        await listen_forever(
            asyncpg_dsn(self.settings.database_url),
            {"comet_cancel": self._on_cancel_notice, "comet_dispatch": self._on_dispatch_notice},
            # Notifications sent while reconnecting are lost: look for queued work at once.
            on_connect=self._work_waiting.set,
        )

    def _on_cancel_notice(self, payload: str) -> None:
        with contextlib.suppress(ValueError):
            attempt = self.running.get(uuid.UUID(payload))
            if attempt is not None:
                log.info("cancel requested", stage=attempt.claim.stage, attempt=attempt.claim.number)
                attempt.cancel.set()

    async def run(self, stop: asyncio.Event) -> None:
        b = self.backbone
        if not await b.start(stop):
            await b.stop()
            return
        await retry_transient(
            lambda: b.admin.ensure([b.topics.dispatch(self.settings.pool)]), what="topic creation"
        )
        await retry_transient(self._register, what="worker registration")
        background = [
            asyncio.create_task(self.consumer.run(), name="worker-consumer"),
            asyncio.create_task(self._heartbeats(), name="heartbeats"),
            asyncio.create_task(self._listen_cancels(), name="cancel-listener"),
            asyncio.create_task(self._claim_queued(), name="claim-queued"),
            asyncio.create_task(self._ready_when_consuming(), name="readiness"),
        ]
        log.info(
            "worker started",
            worker_id=self.worker_id,
            pool=self.settings.pool,
            concurrency=self.settings.concurrency,
            labels=self.settings.labels,
        )
        try:
            await stop.wait()
            await self.drain()
        finally:
            self.consumer.stop()
            for task in background[1:]:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            with contextlib.suppress(Exception):
                async with b.sessions.begin() as session:
                    await workers_repo.leave(session, self.worker_id)
            await b.stop()
            log.info("worker stopped", worker_id=self.worker_id)

    async def _ready_when_consuming(self) -> None:
        await self.consumer.started.wait()
        self.backbone.mark_ready(f"consuming the dispatches of pool {self.settings.pool}")

    async def _register(self) -> None:
        async with self.backbone.sessions.begin() as session:
            await workers_repo.register(
                session,
                worker_id=self.worker_id,
                pool=self.settings.pool,
                labels_json=json.dumps(self.settings.labels),
                concurrency=self.settings.concurrency,
                hostname=socket.gethostname(),
                pid=os.getpid(),
            )

    async def drain(self) -> None:
        """No new claims; let running stages finish (heartbeats go on) up to the drain timeout,
        then stop them: their leases expire and the reaper hands them to other workers."""
        self.draining = True
        self.consumer.capacity_changed()
        # A claim in flight commits attempts to this worker: wait for it, so that they are started
        # and drained with the rest (left unstarted, their lease would expire and fail them as lost).
        # Once it is released, every later claim sees no free slot.
        async with self._claiming:
            pass
        if self._tasks:
            log.info("draining", running=len(self._tasks), timeout_s=self.settings.drain_timeout_s)
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.settings.drain_timeout_s)
            if pending:
                log.warning("drain timeout; handing running stages back", count=len(pending))
                for attempt in self.running.values():
                    attempt.handed_back = True
                    attempt.cancel.set()
                await asyncio.wait(pending, timeout=self.settings.kill_grace_s + 5)
