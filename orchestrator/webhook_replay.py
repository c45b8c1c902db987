"""Replaying a window of stored webhook deliveries: `comet replay webhooks` and
`POST /projects/{id}/webhooks/replay` (docs/decisions/0018).

Each selected delivery is judged in two steps. First without I/O (`precheck`): a delivery rejected
at intake has nothing to replay, and one that already produced its run is skipped unless forced.
Then with the very `plan_delivery` a live delivery gets (`.comet.yml` read at the event's commit,
its `on:` asked). A dry run prints the judgement; a real replay re-drives each delivery that would
start a run as a `webhook.received` event carrying `replay_id` (and `forced`), which the
orchestrator plans again and applies like a live delivery: its inbox and the delivery row's lock
make each re-drive count once, and a delivery whose live event is still in flight is not run twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Project, WebhookDelivery
from db.repositories import webhooks as deliveries
from events.envelope import new_envelope
from events.outbox import PendingEvent, add_events
from events.topics import Topics
from orchestrator.planning import DefinitionReader
from orchestrator.webhooks import DeliveryPlan, RunToCreate, plan_delivery
from schemas.events import WebhookReceived

T = TypeVar("T")
PROVIDERS = ("github", "gitlab", "bitbucket")
OUTCOMES = ("accepted", "ignored", "rejected")

# Why a delivery is not replayed, as counted in the summary.
SkipReason = Literal[
    "already produced its run",
    "rejected at intake",
    "no project",
    "not a runnable event",
    "on: does not match",
]


@dataclass(frozen=True, slots=True)
class Judgement:
    """What a replay does (or would do) with one delivery, and why, in words for people."""

    delivery_row_id: uuid.UUID
    project_id: uuid.UUID | None
    provider: str
    delivery_id: str
    event: str
    received_at: datetime
    runs: tuple[RunToCreate, ...] = ()
    skip: SkipReason | None = None
    detail: str = ""

    @property
    def replays(self) -> bool:
        return self.skip is None and bool(self.runs)

    def line(self, *, dry_run: bool = True) -> str:
        """`<received at> <host> <delivery id> (<event>): <what and why>`; a real replay's line says
        what was done (`re-driven: starts a run for …`) where a dry run's says `would start …`."""
        at = self.received_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        detail = self.detail
        if self.replays and not dry_run:
            detail = detail.replace("would start a run", "re-driven: starts a run")
        return f"{at} {self.provider} {self.delivery_id} ({self.event}): {detail}"


def _judgement(d: WebhookDelivery, **fields: object) -> Judgement:
    return Judgement(
        delivery_row_id=d.id,
        project_id=d.project_id,
        provider=d.provider,
        delivery_id=d.delivery_id,
        event=d.event,
        received_at=d.received_at,
        **fields,  # type: ignore[arg-type]
    )


def precheck(delivery: WebhookDelivery, *, force: bool) -> Judgement | None:
    """Pure: the judgement of a delivery that needs no planning, or None when it must be planned."""
    if delivery.outcome == "rejected":
        why = f" ({delivery.reason})" if delivery.reason else ""
        return _judgement(
            delivery, skip="rejected at intake", detail=f"skipped: rejected at intake{why}; nothing to replay"
        )
    if delivery.project_id is None:
        return _judgement(delivery, skip="no project", detail="skipped: the delivery belongs to no project")
    if delivery.run_id is not None and not force:
        return _judgement(
            delivery,
            skip="already produced its run",
            detail=f"skipped: already produced run {delivery.run_id} (--force starts a new one)",
        )
    return None


def judge(delivery: WebhookDelivery, plan: DeliveryPlan) -> Judgement:
    """Pure: the judgement of a planned delivery."""
    if plan.runs:
        detail = "; ".join(
            f"would start a run for {r.ref} at {r.sha[:12]} because {r.why}" for r in plan.runs
        )
        return _judgement(delivery, runs=tuple(plan.runs), detail=detail)
    if any(s.kind == "not_matched" for s in plan.skips):
        reasons = "; ".join(s.reason for s in plan.skips)
        return _judgement(
            delivery, skip="on: does not match", detail=f"skipped: on: does not match ({reasons})"
        )
    reasons = "; ".join(s.reason for s in plan.skips) or "nothing to run"
    return _judgement(delivery, skip="not a runnable event", detail=f"skipped: {reasons}")


@dataclass(slots=True)
class Counts:
    """Scanned / replayed / skipped (with why), and the runs the replayed deliveries start."""

    scanned: int = 0
    replayed: int = 0
    runs: int = 0
    skipped_by: Counter[str] = field(default_factory=Counter)

    @property
    def skipped(self) -> int:
        return sum(self.skipped_by.values())

    def add(self, judgement: Judgement) -> None:
        self.scanned += 1
        if judgement.replays:
            self.replayed += 1
            self.runs += len(judgement.runs)
        else:
            self.skipped_by[judgement.skip or "not a runnable event"] += 1

    def summary(self, *, dry_run: bool) -> str:
        """`scanned 12 / replayed 9 (9 runs) / skipped 3 (already produced its run 2, …)`."""
        verb = "would replay" if dry_run else "replayed"
        runs = "would start" if dry_run else "to start"
        why = ", ".join(f"{reason} {n}" for reason, n in sorted(self.skipped_by.items()))
        text = (
            f"scanned {self.scanned} / {verb} {self.replayed} ({runs} {self.runs} run"
            f"{'' if self.runs == 1 else 's'}) / skipped {self.skipped}" + (f" ({why})" if why else "")
        )
        return f"dry run: {text}; nothing was changed" if dry_run else text


class Pacer:
    """Lets `rate` items a second through on average, counted from the first item. After a stall
    (slow planning, a slow commit) it catches up by at most one second's worth, never a burst."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("a pace is a positive number of items per second")
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._start: float | None = None
        self._passed = 0

    async def take(self, items: int) -> None:
        now = self._clock()
        if self._start is None or now - (self._start + self._passed / self.rate) > 1.0:
            self._start, self._passed = now, 0
        due = self._start + self._passed / self.rate
        self._passed += items
        if due > now:
            await self._sleep(due - now)


def batch_size(rate: float) -> int:
    """Deliveries re-driven per transaction: about twenty commits a second, 1 to 100 each."""
    return max(1, min(100, round(rate / 20)))


def chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Judge:
    """Judges pages of deliveries, reading `.comet.yml` through one `DefinitionReader` (its cache
    makes a window of deliveries on a few commits cost a few git reads)."""

    def __init__(self, reader: DefinitionReader) -> None:
        self._reader = reader
        self._repos: dict[uuid.UUID, str] = {}

    async def page(
        self, session: AsyncSession, page: Sequence[WebhookDelivery], *, force: bool, replay_id: uuid.UUID
    ) -> list[Judgement]:
        missing = {d.project_id for d in page if d.project_id is not None} - self._repos.keys()
        if missing:
            rows = await session.execute(select(Project.id, Project.repo_url).where(Project.id.in_(missing)))
            self._repos.update({row.id: row.repo_url for row in rows})
        out = []
        for delivery in page:
            early = precheck(delivery, force=force)
            if early is None and delivery.project_id not in self._repos:
                early = _judgement(delivery, skip="no project", detail="skipped: its project was deleted")
            if early is not None:
                out.append(early)
                continue
            assert delivery.project_id is not None
            plan = await plan_delivery(
                self._reader, delivery, self._repos[delivery.project_id], forced=force, replay_id=replay_id
            )
            out.append(judge(delivery, plan))
        return out


async def redrive(
    session: AsyncSession,
    topics: Topics,
    judgements: Sequence[Judgement],
    *,
    force: bool,
    replay_id: uuid.UUID,
) -> int:
    """Add a `webhook.received` event for each delivery that replays (in the caller's transaction)."""
    chosen = [j for j in judgements if j.replays and j.project_id is not None]
    events = [
        PendingEvent(
            topics.webhooks,
            new_envelope(
                WebhookReceived(
                    delivery_row_id=j.delivery_row_id,
                    provider=j.provider,
                    project_id=j.project_id,
                    forced=force,
                    replay_id=replay_id,
                ),
                key=str(j.project_id),
            ),
        )
        for j in chosen
        if j.project_id is not None
    ]
    await add_events(session, events)
    await deliveries.count_redeliveries(session, [j.delivery_row_id for j in chosen])
    return len(events)


PAGE = 500


async def next_page(
    session: AsyncSession,
    selection: deliveries.ReplaySelection,
    after: tuple[datetime, uuid.UUID] | None,
    *,
    limit: int = PAGE,
) -> tuple[list[WebhookDelivery], tuple[datetime, uuid.UUID] | None]:
    """The next page of the selection and the keyset position after it."""
    page = await deliveries.selected_page(session, selection, after=after, limit=limit)
    return page, ((page[-1].received_at, page[-1].id) if page else after)
