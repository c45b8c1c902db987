"""`POST /projects/{id}/webhooks/replay`: the REST face of `comet replay webhooks` (maintainer+,
audited; docs/decisions/0018).

The same judgement as the command (orchestrator/webhook_replay.py: `plan_delivery` against
`.comet.yml` at each commit). A request covers at most `COMET_WEBHOOK_REPLAY_MAX` deliveries and is
done in one transaction — the re-driven deliveries' events, their redelivery counts and the audit
entry commit together or not at all; a larger window is for the command, which paces itself.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Request

from api.access import Action, ProjectAccess, project_permit
from api.deps import BackboneDep, CurrentUser, SessionDep, SettingsDep
from api.errors import ValidationFailed, problem_responses
from api.idempotency import Idempotent
from api.routes import API_PREFIX
from cli.moments import parse_moment
from config.settings import ApiSettings
from db.repositories import audit
from db.repositories import webhooks as deliveries
from orchestrator.planning import DefinitionReader
from orchestrator.webhook_replay import Counts, Judge, Judgement, next_page, redrive
from schemas.api.webhook_replay import (
    PLAN_SHOWN,
    PlannedRun,
    ReplayedDelivery,
    WebhookReplayAccepted,
    WebhookReplayRequest,
)
from schemas.ids import uuid7
from workers.git import MirrorCache

router = APIRouter(prefix=API_PREFIX, tags=["webhooks"])


def _window(body: WebhookReplayRequest, now: datetime) -> tuple[datetime, datetime]:
    errors = []
    since = until = now
    try:
        since = parse_moment(body.since, now).astimezone(UTC)
    except ValueError as exc:
        errors.append(("body.since", str(exc)))
    except OverflowError:  # `99999999d` ago, or a zone that moves year 1 out of range
        errors.append(("body.since", "is out of the range of dates"))
    if body.until is not None:
        try:
            until = parse_moment(body.until, now).astimezone(UTC)
        except ValueError as exc:
            errors.append(("body.until", str(exc)))
        except OverflowError:
            errors.append(("body.until", "is out of the range of dates"))
    if errors:
        raise ValidationFailed("The replay window is not valid.", errors=errors)
    if until <= since:
        raise ValidationFailed(
            "The replay window is empty: `until` must be after `since`.",
            errors=[("body.until", f"{until.isoformat()} is not after since ({since.isoformat()})")],
        )
    return since, until


def _reader(request: Request, settings: ApiSettings) -> DefinitionReader:
    """One reader per app: its cache of `.comet.yml` texts by commit outlives a request."""
    reader = getattr(request.app.state, "webhook_replay_reader", None)
    if not isinstance(reader, DefinitionReader):
        reader = DefinitionReader(MirrorCache(Path(settings.git_cache_dir)))
        request.app.state.webhook_replay_reader = reader
    return reader


def _shown(j: Judgement) -> ReplayedDelivery:
    return ReplayedDelivery(
        id=j.delivery_row_id,
        provider=j.provider,
        delivery_id=j.delivery_id,
        event=j.event,
        received_at=j.received_at,
        action="replay" if j.replays else "skip",
        detail=j.detail,
        runs=[PlannedRun(ref=r.ref, sha=r.sha, because=r.why) for r in j.runs],
    )


@router.post(
    "/projects/{project_id}/webhooks/replay",
    summary="Replay a window of stored webhook deliveries",
    description="Re-drives the project's deliveries received in [since, until) through the same "
    "planning as a live delivery. Idempotent by default: a delivery that already produced its run is "
    "skipped; `force` starts new runs (trigger `{kind: replay, delivery, replay_id, ...}`). "
    "`dry_run` changes nothing and lists what would happen to each delivery. At most "
    "`COMET_WEBHOOK_REPLAY_MAX` deliveries per request (use `comet replay webhooks` for more).",
    status_code=202,
    response_model=WebhookReplayAccepted,
    responses=problem_responses(401, 403, 404, 422),
)
async def replay_webhooks(
    body: WebhookReplayRequest,
    access: Annotated[ProjectAccess, project_permit(Action.REPLAY)],
    user: CurrentUser,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    backbone: BackboneDep,
    idempotent: Idempotent,
) -> WebhookReplayAccepted:
    since, until = _window(body, datetime.now(UTC))
    selection = deliveries.ReplaySelection(since, until, access.project.id, body.provider, body.outcome)
    count = await deliveries.count_selected(session, selection)
    if count > settings.webhook_replay_max:
        raise ValidationFailed(
            f"The window holds {count} deliveries; a request replays at most {settings.webhook_replay_max}. "
            "Narrow the window, or use `comet replay webhooks`, which paces a large replay.",
            errors=[
                ("body.since", f"the window holds {count} deliveries (at most {settings.webhook_replay_max})")
            ],
        )
    replay_id = uuid7()
    judge = Judge(_reader(request, settings))
    counts, judged, after = Counts(), [], None
    while True:
        page, after = await next_page(session, selection, after)
        if not page:
            break
        for j in await judge.page(session, page, force=body.force, replay_id=replay_id):
            counts.add(j)
            judged.append(j)
    if not body.dry_run and counts.replayed:
        await redrive(session, backbone.topics, judged, force=body.force, replay_id=replay_id)
        await audit.record(
            session,
            action=audit.WEBHOOK_REPLAYED,
            actor_id=user.id,
            target_type="webhook_window",
            target_id=replay_id,
            project_id=access.project.id,
            details={
                "via": "api",
                "since": since.isoformat(),
                "until": until.isoformat(),
                "provider": body.provider,
                "outcome": body.outcome,
                "forced": body.force,
                "scanned": counts.scanned,
                "replayed": counts.replayed,
                "skipped": counts.skipped,
            },
        )
    answer = WebhookReplayAccepted(
        replay_id=None if body.dry_run else replay_id,
        dry_run=body.dry_run,
        force=body.force,
        since=since,
        until=until,
        scanned=counts.scanned,
        replayed=counts.replayed,
        skipped=counts.skipped,
        runs=counts.runs,
        skipped_by=dict(counts.skipped_by),
        summary=counts.summary(dry_run=body.dry_run),
        plan=[_shown(j) for j in judged[:PLAN_SHOWN]] if body.dry_run else [],
        plan_truncated=body.dry_run and len(judged) > PLAN_SHOWN,
    )
    await idempotent.commit(answer)
    backbone.wake_relay()
    return answer
