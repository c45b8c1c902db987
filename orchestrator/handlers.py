"""The orchestrator shell: turns a batch of events into inputs, runs `decide()` on each against
the locked run state, and writes the outcome — rows, attempts, status events, dispatches — in one
transaction together with the inbox entries of the events applied."""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import projection
from db.models import Project
from db.repositories import concurrency as concurrency_repo
from db.repositories import deployments as deployments_repo
from db.repositories import run_state
from db.repositories.projects import repo_urls
from db.repositories.test_timings import recorded_durations
from db.repositories.webhooks import get_deliveries
from events.consumer import Received
from events.envelope import Envelope, new_envelope
from events.inbox import claim_new
from events.outbox import PendingEvent, add_events
from events.topics import Topics
from orchestrator import deployments as deploy_rules
from orchestrator.concurrency import GroupMember, admit, next_to_release
from orchestrator.decide import decide
from orchestrator.inputs import input_of
from orchestrator.model import (
    CancelAttempts,
    DispatchAttempt,
    EnvironmentGranted,
    GroupReleased,
    Input,
    PlanFailed,
    Planned,
    RunState,
)
from orchestrator.planning import DefinitionReader, plan_run
from orchestrator.selection import apply_selection, selection_from_trigger
from orchestrator.status_events import status_changes
from orchestrator.webhooks import DeliveryPlan, apply_delivery, plan_delivery
from schemas.events import (
    AttemptDispatched,
    DeploymentEnvironmentGranted,
    RunCancelRequested,
    RunChanged,
    RunGroupReleased,
    RunNote,
    RunRequested,
    WebhookReceived,
)
from schemas.ids import uuid7
from workers.git import MirrorCache

log = structlog.get_logger(__name__)

# Called after a run of a project's default branch was planned: (project, repo, ref, sha). The
# pipeline schedules follow the default branch's `.comet.yml` (orchestrator/pipeline_schedules.py).
DefaultBranchPlanned = Callable[[uuid.UUID, str, str, str], Awaitable[None]]


@dataclass(slots=True)
class _Batch:
    now: datetime
    loaded: dict[uuid.UUID, run_state.LoadedRun] = field(default_factory=dict)
    states: dict[uuid.UUID, RunState] = field(default_factory=dict)
    # The last input applied to each run: the cause of its `run.changed` event.
    causes: dict[uuid.UUID, Envelope] = field(default_factory=dict)
    events: list[PendingEvent] = field(default_factory=list)
    dispatches: list[tuple[uuid.UUID, DispatchAttempt, Envelope]] = field(default_factory=list)
    cancels: list[tuple[uuid.UUID, CancelAttempts, str]] = field(default_factory=list)


class _Groups:
    """The members of concurrency groups as this batch sees them: the database's rows, overlaid
    with the batch's own not-yet-written run states."""

    def __init__(self, session: AsyncSession, work: _Batch) -> None:
        self._session = session
        self._work = work
        self._locked: set[str] = set()
        self._db: dict[str, list[GroupMember]] = {}

    async def lock(self, groups: Iterable[str]) -> None:
        new = set(groups) - self._locked
        await concurrency_repo.lock_groups(self._session, new)
        self._locked |= new

    async def members(self, group: str) -> list[GroupMember]:
        if group not in self._db:
            self._db[group] = await concurrency_repo.unfinished_members(self._session, group)
        batch = {
            run_id: GroupMember(run_id, state.status, state.waiting_for_group)
            for run_id, state in self._work.states.items()
            if state.concurrency_group == group
        }
        return [m for m in self._db[group] if m.run_id not in batch] + list(batch.values())


class RunEngine:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        topics: Topics,
        git: MirrorCache,
        *,
        on_commit: Callable[[], None] = lambda: None,
        untrusted_pool: str = "untrusted",
        on_default_branch_planned: DefaultBranchPlanned | None = None,
        approval_timeout_s: float = deploy_rules.DEFAULT_APPROVAL_TIMEOUT_S,
    ) -> None:
        self._approval_timeout_s = approval_timeout_s
        self._untrusted_pool = untrusted_pool
        self._on_default_branch_planned = on_default_branch_planned
        self._sessions = sessions
        self._topics = topics
        self._definitions = DefinitionReader(git)
        self._on_commit = on_commit
        self.consumer_name = topics.orchestrator_group
        self.decisions = 0

    async def handle(self, batch: list[Received]) -> None:
        planned = await self._plan_requested(batch)
        deliveries = await self._plan_deliveries(batch)
        work = _Batch(datetime.now(UTC))
        async with self._sessions.begin() as session:
            fresh = await claim_new(session, self.consumer_name, [r.envelope.event_id for r in batch])
            for r in batch:
                delivery_plan = deliveries.get(r.envelope.event_id)
                if delivery_plan is not None and r.envelope.event_id in fresh:
                    await apply_delivery(session, self._topics, delivery_plan, r.envelope.correlation_id)
            inputs: list[tuple[uuid.UUID, Input, Envelope]] = []
            for r in batch:
                if r.envelope.event_id not in fresh:
                    continue
                converted = self._to_input(r.envelope, planned)
                if converted is not None:
                    inputs.append((converted[0], converted[1], r.envelope))
            if not inputs:
                return
            work.loaded = await run_state.load_for_update(session, (run_id for run_id, _, _ in inputs))
            work.states = {run_id: lr.state for run_id, lr in work.loaded.items()}
            groups = _Groups(session, work)
            await groups.lock(
                [i.concurrency_group for _, i, _ in inputs if isinstance(i, Planned) and i.concurrency_group]
            )
            for run_id, event_input, envelope in inputs:
                if run_id not in work.states:
                    log.warning(
                        "event for an unknown run ignored",
                        run_id=str(run_id),
                        event_id=str(envelope.event_id),
                    )
                    continue
                admitted = event_input
                if isinstance(event_input, Planned) and event_input.concurrency_group:
                    admitted = await self._admit(groups, work, run_id, event_input, envelope)
                self._apply(work, run_id, admitted, envelope)
            await self._release_groups(session, groups, work)
            await self._grant_environments(session, work)
            deltas = {
                run_id: run_state.diff(lr, work.states[run_id], work.now)
                for run_id, lr in work.loaded.items()
            }
            changed = await self._write_commands(session, work, deltas)
            # The rows are the projection of the `run.changed` events, written as a rebuild would.
            await projection.write(
                await session.connection(),
                projection.fold(projection.from_envelope(e.envelope) for e in changed),
            )
            await add_events(session, [*changed, *work.events])
        self._on_commit()

    def _apply(self, work: _Batch, run_id: uuid.UUID, event_input: Input, cause: Envelope) -> None:
        """decide() one input against the batch's current state of the run, collecting effects."""
        before = work.states[run_id]
        decision = decide(before, event_input, work.now)
        self.decisions += 1
        if decision.note:
            log.info(
                decision.note,
                run_id=str(run_id),
                event_type=cause.type,
                event_id=str(cause.event_id),
                correlation_id=cause.correlation_id,
            )
            note = RunNote(
                run_id=run_id, note=decision.note, cause_event_id=cause.event_id, cause_type=cause.type
            )
            work.events.append(
                dataclasses.replace(
                    self._emit(self._topics.run_status, note, cause, run_id), history_only=True
                )
            )
        work.states[run_id] = decision.state
        work.causes[run_id] = cause
        for payload in status_changes(before, decision.state, work.now):
            work.events.append(self._emit(self._topics.run_status, payload, cause, run_id))
        for change in deploy_rules.status_changes(before, decision.state, work.now):
            work.events.append(self._emit(self._topics.run_status, change, cause, run_id))
        for command in decision.commands:
            if isinstance(command, DispatchAttempt):
                work.dispatches.append((run_id, command, cause))
            else:
                work.cancels.append((run_id, command, decision.state.failure_reason or "cancelled"))

    async def _admit(
        self, groups: _Groups, work: _Batch, run_id: uuid.UUID, planned_input: Planned, cause: Envelope
    ) -> Planned:
        group = planned_input.concurrency_group
        assert group is not None
        others = [m for m in await groups.members(group) if m.run_id != run_id]
        admission = admit(
            group,
            cancel_in_progress=planned_input.cancel_in_progress,
            queue=planned_input.queue,
            others=others,
        )
        number = work.states[run_id].trigger.get("number")
        for other in admission.cancel:
            reason = f"cancelled by a newer run in concurrency group {group!r}" + (
                f" (#{number})" if number else ""
            )
            payload = RunCancelRequested(run_id=other, source="concurrency_group", reason=reason)
            work.events.append(self._emit(self._topics.run_commands, payload, cause, other))
        return dataclasses.replace(planned_input, admission=admission.action, refusal=admission.reason)

    async def _release_groups(self, session: AsyncSession, groups: _Groups, work: _Batch) -> None:
        """When a group has no active run left, start its oldest waiting run in this same transaction
        (so no newcomer can slip in between), and record that as an event."""
        touched = {s.concurrency_group for s in work.states.values() if s.concurrency_group}
        await groups.lock(touched)
        for group in sorted(touched):
            member = next_to_release(await groups.members(group))
            if member is None:
                continue
            if member.run_id not in work.states:
                extra = await run_state.load_for_update(session, [member.run_id])
                work.loaded.update(extra)
                work.states.update({rid: lr.state for rid, lr in extra.items()})
            cause = new_envelope(RunGroupReleased(run_id=member.run_id, group=group), key=str(member.run_id))
            work.events.append(PendingEvent(self._topics.run_commands, cause))
            self._apply(work, member.run_id, GroupReleased(), cause)

    async def _grant_environments(self, session: AsyncSession, work: _Batch) -> None:
        """One deployment at a time per environment (decision 0027): for each environment a
        deployment of this batch moved in, under the environment's lock, when none is active, the
        oldest ready one deploys now, in this same transaction (recorded as an event)."""
        touched: set[tuple[uuid.UUID, str]] = set()
        for run_id, state in work.states.items():
            loaded = work.loaded[run_id].state.deployments
            touched |= {
                (state.project_id, d.environment)
                for name, d in state.deployments.items()
                if d != loaded.get(name)
            }
        if not touched:
            return
        await deployments_repo.lock_environments(session, touched)
        for project_id, environment in sorted(touched, key=lambda t: (str(t[0]), t[1])):
            line = await deployments_repo.in_environment(
                session, project_id, environment, excluding_runs=sorted(work.states)
            )
            for run_id, state in work.states.items():
                if state.project_id != project_id:
                    continue
                line += [
                    deployments_repo.InLine(
                        d.id, run_id, d.status, d.ready_at is not None, d.created_at or work.now
                    )
                    for d in state.deployments.values()
                    if d.environment == environment
                ]
            if any(d.status in ("queued", "in_progress") for d in line):
                continue
            ready = sorted(
                (d for d in line if d.status == "waiting" and d.ready),
                key=lambda d: (d.created_at, str(d.id)),
            )
            if not ready:
                continue
            chosen = ready[0]
            if chosen.run_id not in work.states:
                extra = await run_state.load_for_update(session, [chosen.run_id])
                work.loaded.update(extra)
                work.states.update({rid: lr.state for rid, lr in extra.items()})
            payload = DeploymentEnvironmentGranted(
                run_id=chosen.run_id, deployment_id=chosen.id, environment=environment
            )
            cause = new_envelope(payload, key=str(chosen.run_id))
            # Applied now; when it comes back from Kafka it is no news.
            await claim_new(session, self.consumer_name, [cause.event_id])
            work.events.append(PendingEvent(self._topics.run_commands, cause))
            self._apply(work, chosen.run_id, EnvironmentGranted(chosen.id), cause)

    async def _write_commands(
        self, session: AsyncSession, work: _Batch, deltas: dict[uuid.UUID, run_state.RunDelta]
    ) -> list[PendingEvent]:
        """Carry out the decisions' commands (attempts to queue, attempts to cancel) and return each
        changed run's `run.changed` event, which holds them with the run's row changes."""
        new_attempts: dict[uuid.UUID, list[run_state.NewAttempt]] = {}
        for run_id, command, cause in work.dispatches:
            attempt = run_state.NewAttempt(
                id=uuid7(),
                run_id=run_id,
                stage_id=deltas[run_id].stage_ids[command.stage],
                stage=command.stage,
                number=command.number,
                pool=command.pool,
                dispatch_at=work.now + timedelta(seconds=command.delay_s) if command.delay_s > 0 else None,
                labels=dict(work.states[run_id].stages[command.stage].spec.get("labels") or {}),
            )
            new_attempts.setdefault(run_id, []).append(attempt)
            if attempt.dispatch_at is not None:
                continue  # the reaper dispatches it once its backoff has passed
            payload = AttemptDispatched(
                run_id=run_id,
                stage_id=attempt.stage_id,
                attempt_id=attempt.id,
                stage=command.stage,
                number=command.number,
                pool=command.pool,
            )
            work.events.append(self._emit(self._topics.dispatch(command.pool), payload, cause, run_id))
        await run_state.notify_dispatch(
            session, {a.pool for batch in new_attempts.values() for a in batch if a.dispatch_at is None}
        )
        cancelled, stopping, reasons = await self._cancels(session, work, deltas, new_attempts)
        await run_state.notify_cancel(session, [a for ids in stopping.values() for a in ids])
        events = []
        for run_id, delta in deltas.items():
            attempts = new_attempts.get(run_id, [])
            if not (delta or attempts or cancelled.get(run_id) or stopping.get(run_id)):
                continue
            changed = RunChanged(
                run_id=run_id,
                at=work.now,
                run=delta.run,
                new_stages=delta.new_stages,
                stages=delta.stages,
                new_attempts=[a.row(work.now) for a in attempts],
                cancelled_attempts=cancelled.get(run_id, []),
                stopping_attempts=stopping.get(run_id, []),
                cancel_reason=reasons.get(run_id),
                new_deployments=delta.new_deployments,
                deployments=delta.deployments,
                revision=delta.revision,
            )
            last = work.causes.get(run_id)
            events.append(
                PendingEvent(
                    self._topics.run_status,
                    new_envelope(
                        changed,
                        key=str(run_id),
                        correlation_id=last.correlation_id if last else None,
                        causation_id=str(last.event_id) if last else None,
                        # Stamped now, after the attempts were locked: a replay ordered by time
                        # puts it after every start and result it saw (its rows keep `at`).
                    ),
                )
            )
        return events

    @staticmethod
    async def _cancels(
        session: AsyncSession,
        work: _Batch,
        deltas: dict[uuid.UUID, run_state.RunDelta],
        new_attempts: dict[uuid.UUID, list[run_state.NewAttempt]],
    ) -> tuple[dict[uuid.UUID, list[uuid.UUID]], dict[uuid.UUID, list[uuid.UUID]], dict[uuid.UUID, str]]:
        """Which attempts the batch's cancels stop, per run: queued ones (cancelled outright, including
        ones this batch queued) and running ones (their workers are told)."""
        cancelled: dict[uuid.UUID, list[uuid.UUID]] = {}
        stopping: dict[uuid.UUID, list[uuid.UUID]] = {}
        reasons: dict[uuid.UUID, str] = {}
        if not work.cancels:
            return cancelled, stopping, reasons
        run_of: dict[uuid.UUID, uuid.UUID] = {}
        for run_id, cancel, reason in work.cancels:
            reasons[run_id] = reason
            for name in cancel.stages:
                run_of[deltas[run_id].stage_ids[name]] = run_id
        for attempt in await run_state.active_attempts(session, sorted(run_of)):
            target = cancelled if attempt.queued else stopping
            target.setdefault(run_of[attempt.stage_id], []).append(attempt.id)
        for run_id, attempts in new_attempts.items():
            for a in attempts:
                if run_of.get(a.stage_id) == run_id:
                    cancelled.setdefault(run_id, []).append(a.id)
        return cancelled, stopping, reasons

    @staticmethod
    def _emit(topic: str, payload: object, cause: Envelope, run_id: uuid.UUID) -> PendingEvent:
        return PendingEvent(
            topic,
            new_envelope(
                payload,  # type: ignore[arg-type]
                key=str(run_id),
                correlation_id=cause.correlation_id,
                causation_id=str(cause.event_id),
            ),
        )

    async def _plan_deliveries(self, batch: list[Received]) -> dict[uuid.UUID, DeliveryPlan]:
        """Turn webhook deliveries into runs to create (git I/O, before the transaction)."""
        payloads = [
            (r.envelope.event_id, payload)
            for r in batch
            if r.envelope.type == WebhookReceived.TYPE
            and isinstance(payload := r.envelope.typed(), WebhookReceived)
        ]
        plans: dict[uuid.UUID, DeliveryPlan] = {}
        if not payloads:
            return plans
        # One read-only session and two queries for the batch's lookups; git I/O happens outside
        # any transaction.
        loaded = []
        async with self._sessions() as session:
            deliveries = await get_deliveries(session, [p.delivery_row_id for _, p in payloads])
            repos = await repo_urls(session, {p.project_id for _, p in payloads})
            for event_id, payload in payloads:
                delivery = deliveries.get(payload.delivery_row_id)
                repo_url = repos.get(payload.project_id)
                if delivery is not None and repo_url is not None:
                    loaded.append((event_id, delivery, repo_url, payload.forced, payload.replay_id))
        for event_id, delivery, repo_url, forced, replay_id in loaded:
            plans[event_id] = await plan_delivery(
                self._definitions, delivery, repo_url, forced=forced, replay_id=replay_id
            )
        return plans

    async def _plan_requested(self, batch: list[Received]) -> dict[uuid.UUID, Input]:
        """Read and plan `.comet.yml` for new runs before the transaction (git I/O holds no locks)."""
        requests = [r.envelope for r in batch if r.envelope.type == RunRequested.TYPE]
        if not requests:
            return {}
        payloads = [RunRequested.model_validate(e.payload) for e in requests]
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(Project.id, Project.repo_url, Project.default_branch).where(
                        Project.id.in_({p.project_id for p in payloads})
                    )
                )
            ).all()
            repos = {row.id: row.repo_url for row in rows}
            default_refs = {row.id: f"refs/heads/{row.default_branch}" for row in rows}
        planned: dict[uuid.UUID, Input] = {}
        for envelope, payload in zip(requests, payloads, strict=True):
            repo_url = repos.get(payload.project_id)
            if repo_url is None:
                continue
            plan = await plan_run(
                self._definitions,
                repo_url=repo_url,
                ref=payload.ref,
                sha=payload.sha,
                event=str(payload.trigger.get("event") or payload.trigger.get("kind") or "api"),
                variables=payload.variables,
                pool_override=self._untrusted_pool if payload.trigger.get("fork") else None,
                durations=functools.partial(self._durations, payload.project_id),
            )
            # A test suite's run holds only its stages and what they need.
            planned[envelope.event_id] = await self._deploy_plan(
                payload, apply_selection(plan, selection_from_trigger(payload.trigger))
            )
            hook = self._on_default_branch_planned
            if (
                hook is not None
                and isinstance(plan, Planned)
                and payload.ref == default_refs[payload.project_id]
            ):
                await hook(payload.project_id, repo_url, payload.ref, plan.sha)
        return planned

    async def _deploy_plan(self, request: RunRequested, plan: Input) -> Input:
        """A rollback holds only its environment stage(s); deploying stages keep their
        environment's rules as they are now (decision 0027)."""
        if not isinstance(plan, Planned | PlanFailed):
            return plan
        plan = deploy_rules.rollback_plan(plan, request.trigger)
        if not isinstance(plan, Planned) or not deploy_rules.environments_of(plan):
            return plan
        async with self._sessions() as session:
            rules = await deployments_repo.rules_for(
                session, request.project_id, deploy_rules.environments_of(plan), self._approval_timeout_s
            )
        return deploy_rules.with_rules(plan, rules)

    async def _durations(self, project_id: uuid.UUID, stage: str) -> list[tuple[str | None, str, float]]:
        async with self._sessions() as session:
            return await recorded_durations(session, project_id, stage)

    # Which events are inputs, and the input each is: shared with the audit of a run's history.
    _to_input = staticmethod(input_of)
