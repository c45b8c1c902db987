"""From a stored webhook delivery to the runs it starts.

The I/O half (`plan_delivery`, before the transaction): re-parse the stored delivery, read
`.comet.yml` at each event's commit, and ask its `on:` filters — with the changed files from a git
diff when the payload did not list them and the filter needs them. The transactional half
(`apply_delivery`) creates the runs and records the outcome on the delivery row.

`comet replay webhooks` plans with the same `plan_delivery` (its dry run prints the plan; a real
replay re-drives the delivery through the orchestrator, which plans it here again), so a replay
and a live delivery can never decide differently. A replayed delivery's runs say
`{"kind": "replay", ...}` with every field of the webhook trigger (docs/decisions/0018).
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from api.webhooks.events import WebhookEvent
from api.webhooks.intake import why_not_run
from api.webhooks.parsing import WebhookPayloadError, parse
from db.models import WebhookDelivery
from db.repositories import webhooks as deliveries
from db.repositories.runs import create_run
from events.topics import Topics
from orchestrator.planning import DefinitionReader
from schemas.pipeline import DefinitionError, parse_definition
from schemas.triggers import TriggerEvent, Triggers, matches
from workers.git import GitError

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RunToCreate:
    ref: str
    sha: str
    trigger: dict[str, Any]
    why: str = ""  # why `on:` lets it run, for people (a dry run prints it)


# Why an event of a delivery starts no run: the host's event is never run (ping, deletion, ...),
# the payload or repository cannot be read, or `on:` does not match.
SkipKind = Literal["not_runnable", "unparseable", "unreadable", "no_definition", "not_matched"]


@dataclass(frozen=True, slots=True)
class Skip:
    kind: SkipKind
    reason: str


@dataclass(slots=True)
class DeliveryPlan:
    delivery_row_id: uuid.UUID
    project_id: uuid.UUID
    forced: bool
    runs: list[RunToCreate] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        return [s.reason for s in self.skips]


def _trigger(event: WebhookEvent, delivery: WebhookDelivery, replay_id: uuid.UUID | None) -> dict[str, Any]:
    replay = {} if replay_id is None else {"replay_id": str(replay_id)}
    return replay | {
        "kind": "webhook" if replay_id is None else "replay",
        "event": "pull_request" if event.kind == "pull_request" else event.kind,
        "provider": event.provider,
        "delivery_id": event.delivery_id,
        "delivery": str(delivery.id),
        "action": event.action,
        "branch": event.branch,
        "tag": event.tag,
        "base_branch": event.base_branch,
        "pr_number": event.pr_number,
        "fork": event.fork,
        "sender": event.sender,
    }


async def _with_changed_paths(
    reader: DefinitionReader, repo_url: str, event: TriggerEvent, before: str | None, sha: str
) -> TriggerEvent:
    """The payload truncated or omitted the changed files: ask git for them (best effort)."""
    if event.changed_paths is not None or event.kind != "push" or not before or set(before) == {"0"}:
        return event
    try:
        paths = await reader.git.changed_paths(repo_url, before, sha)
    except GitError as exc:
        log.info("could not diff for paths filter; treating paths as unknown", error=str(exc))
        return event
    return dataclasses.replace(event, changed_paths=paths)


@functools.lru_cache(maxsize=256)
def _triggers(text: str) -> Triggers | None:
    """The `on:` of a definition text, None when the text does not parse. Cached: a commit's
    definition never changes, and a burst of deliveries (or a replay) shares a few commits."""
    try:
        return parse_definition(text).on
    except DefinitionError:
        return None


def runnable_events(delivery: WebhookDelivery) -> tuple[list[WebhookEvent], list[Skip]]:
    """Pure: the events of a stored delivery worth asking `on:` about, and why the others are not."""
    try:
        events = parse(delivery.provider, delivery.headers, delivery.body)
    except WebhookPayloadError as exc:  # stored deliveries parsed once already; be safe anyway
        return [], [Skip("unparseable", f"payload no longer parses: {exc}")]
    runnable, skips = [], []
    for event in events:
        why = why_not_run(event)
        if why is None:
            runnable.append(event)
        else:
            skips.append(Skip("not_runnable", why))
    return runnable, skips


async def plan_delivery(
    reader: DefinitionReader,
    delivery: WebhookDelivery,
    repo_url: str,
    *,
    forced: bool,
    replay_id: uuid.UUID | None = None,
) -> DeliveryPlan:
    """The runs a stored delivery starts. With `replay_id`, it is being replayed: its runs' trigger
    says `replay` (and names the replay) instead of `webhook`; nothing else differs."""
    assert delivery.project_id is not None
    plan = DeliveryPlan(delivery.id, delivery.project_id, forced)
    events, plan.skips = runnable_events(delivery)
    for event in events:
        assert event.sha is not None
        assert event.ref is not None
        try:
            sha, text = await reader.read(repo_url, event.ref, event.sha)
        except GitError as exc:
            plan.skips.append(Skip("unreadable", f"could not read the repository at {event.sha[:12]}: {exc}"))
            continue
        if text is None:
            plan.skips.append(Skip("no_definition", f"no .comet.yml at {sha[:12]}"))
            continue
        trigger_event = await _with_changed_paths(reader, repo_url, event.trigger_event(), event.before, sha)
        triggers = _triggers(text)
        if triggers is None:
            # A broken definition still gets its run, which fails with the reason for all to see.
            matched, why = True, "invalid .comet.yml"
        else:
            matched, why = matches(triggers, trigger_event)
        if matched:
            plan.runs.append(RunToCreate(event.ref, sha, _trigger(event, delivery, replay_id), why))
        else:
            plan.skips.append(Skip("not_matched", why))
    return plan


async def apply_delivery(
    session: AsyncSession, topics: Topics, plan: DeliveryPlan, correlation_id: str
) -> None:
    """Create the planned runs and record the outcome; a delivery that already started a run is
    not run again unless the redelivery was forced."""
    delivery = await deliveries.get_delivery(session, plan.delivery_row_id, for_update=True)
    if delivery is None:
        return
    if delivery.run_id is not None and not plan.forced:
        log.info("delivery already started its run; not run again", delivery=str(delivery.id))
        return
    run_ids = []
    for spec in plan.runs:
        run = await create_run(
            session,
            topics,
            project_id=plan.project_id,
            ref=spec.ref,
            sha=spec.sha,
            trigger=spec.trigger,
            variables={},
            correlation_id=correlation_id,
        )
        run_ids.append(run.id)
    reason = "; ".join(plan.reasons) or None
    if run_ids:
        await deliveries.set_result(
            session, delivery.id, outcome="accepted", reason=reason, run_id=run_ids[0]
        )
    else:
        await deliveries.set_result(
            session, delivery.id, outcome="ignored", reason=reason or "nothing to run"
        )
