"""Webhook intake from GitHub, GitLab and Bitbucket Cloud, and deliveries as data.

Intake order: size cap (middleware, before anything) → find the project by the repository the
payload names → verify the signature on the raw body against the project's secrets → parse →
store the delivery (unique per host and delivery id) and its `webhook.received` outbox event in
one transaction → 202. A delivery seen before → 200 with `duplicate: true`. Nothing of the body is
trusted before verification except the repository name used to find the secret.
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Depends, Path, Query, Request, Response

from api.access import Action, ProjectAccess, project_permit
from api.deps import BackboneDep, CurrentUser, SessionDep, SettingsDep
from api.errors import BadRequest, Conflict, NotFound, Unauthorized, ValidationFailed, problem_responses
from api.ratelimit import RateLimited
from api.routes import API_PREFIX, Cursor
from api.webhooks import signatures
from api.webhooks.intake import intake
from api.webhooks.parsing import WebhookPayloadError, parse, peek_repository
from db.crypto import SecretBox
from db.models import WebhookDelivery
from db.repositories import audit
from db.repositories import projects as projects_repo
from db.repositories import webhooks as repo
from events.envelope import new_envelope
from events.outbox import PendingEvent, add_events
from schemas.api.common import CursorError, decode_cursor, encode_cursor
from schemas.api.webhooks import DeliveryAck, DeliveryList, DeliveryOut, RedeliverAccepted, SecretRotated
from schemas.events import WEBHOOK_BODY_IN_EVENT_MAX, WebhookReceived

log = structlog.get_logger(__name__)
router = APIRouter(prefix=API_PREFIX, tags=["webhooks"])

Provider = Literal["github", "gitlab", "bitbucket"]
_DELIVERY_HEADER = {
    "github": "X-GitHub-Delivery",
    "gitlab": "X-Gitlab-Event-UUID",
    "bitbucket": "X-Request-UUID",
}
ROTATION_OVERLAP = timedelta(hours=24)
_DUPLICATE: dict[int | str, dict[str, Any]] = {
    200: {"model": DeliveryAck, "description": "A duplicate delivery."}
}


def _verify(provider: str, body: bytes, headers: dict[str, str], keys: repo.VerificationKeys) -> None:
    if provider == "github":
        result = signatures.verify_github(body, headers, keys.hmac_secrets)
    elif provider == "bitbucket":
        result = signatures.verify_bitbucket(body, headers, keys.hmac_secrets)
    else:
        result = signatures.verify_gitlab(headers, keys.token_sha256s)
    if not result.ok:
        raise Unauthorized(f"Webhook signature rejected: {result.reason}.")


def _delivery_id(provider: str, headers: dict[str, str]) -> str | None:
    names = {"gitlab": ("x-gitlab-event-uuid", "idempotency-key", "x-gitlab-webhook-uuid")}.get(
        provider, (_DELIVERY_HEADER[provider].lower(),)
    )
    for name in names:
        values = signatures.header_values(headers, name)
        if len(values) == 1 and values[0].strip():
            return values[0].strip()[:200]
    return None


def _event_name(provider: str, headers: dict[str, str]) -> str:
    name = {"github": "x-github-event", "gitlab": "x-gitlab-event", "bitbucket": "x-event-key"}[provider]
    values = signatures.header_values(headers, name)
    return (values[0] if values else "unknown")[:100]


@router.post(
    "/webhooks/{provider}",
    summary="Receive a webhook delivery",
    description="GitHub (`X-Hub-Signature-256`), GitLab (`X-Gitlab-Token`) or Bitbucket Cloud "
    "(`X-Hub-Signature`). 202 once the delivery is durable; 200 with `duplicate: true` for a delivery "
    "id seen before; 401 when the signature does not verify; 400 for a verified but malformed payload "
    "(recorded as rejected); 503 with Retry-After when the database is down (nothing is stored).",
    status_code=202,
    response_model=DeliveryAck,
    dependencies=[Depends(RateLimited("webhook"))],
    responses={**_DUPLICATE, **problem_responses(400, 401, 404, 413, 422, 503)},
)
async def receive(
    provider: Provider, request: Request, session: SessionDep, settings: SettingsDep, backbone: BackboneDep
) -> Response:
    body = await request.body()
    headers = dict(request.headers.items())
    repository = peek_repository(provider, body)
    box = SecretBox(settings.secret_key.get_secret_value())
    project = (
        None
        if repository is None
        else await repo.intake_target(session, box, provider, repository, datetime.now(UTC))
    )
    if project is None:
        # Without a project there is no secret to verify with; reveal nothing else.
        raise NotFound("No project is set up for the repository this delivery names.")
    _verify(provider, body, headers, project.keys)

    delivery_id = _delivery_id(provider, headers)
    event_name = _event_name(provider, headers)
    try:
        events = parse(provider, headers, body)  # also refuses a missing delivery id header
    except WebhookPayloadError as exc:
        rejected_id = delivery_id or f"missing-{uuid.uuid4()}"
        row_id = await repo.record_delivery(
            session,
            provider=provider,
            delivery_id=rejected_id,
            project_id=project.id,
            event=event_name,
            action=None,
            outcome="rejected",
            reason=str(exc),
            headers=headers,
            body=body,
        )
        await session.commit()
        log.info("webhook rejected", provider=provider, delivery_id=rejected_id, reason=str(exc))
        raise BadRequest(f"Malformed {provider} payload: {exc}.", extra={"delivery": str(row_id)}) from None

    delivery_id = events[0].delivery_id
    verdict = intake(events)
    action = next((e.action for e in events if e.action), None)
    row_id = await repo.record_delivery(
        session,
        provider=provider,
        delivery_id=delivery_id,
        project_id=project.id,
        event=event_name,
        action=action,
        outcome=verdict.outcome,
        reason=verdict.reason,
        headers=headers,
        body=body,
    )
    if row_id is None:
        await session.rollback()
        seen = await repo.existing_delivery(session, provider, delivery_id)
        assert seen is not None
        ack = DeliveryAck(
            delivery_id=delivery_id,
            id=seen.id,
            outcome=seen.outcome,
            reason=seen.reason,
            duplicate=True,
        )
        return Response(ack.model_dump_json(), status_code=200, media_type="application/json")
    if verdict.outcome == "accepted":
        # Version 2 carries the row's contents: a restored database recovers the delivery from
        # the log (docs/decisions/0020); a body too large for a Kafka message stays in the row only.
        payload = WebhookReceived(
            delivery_row_id=row_id,
            provider=provider,
            project_id=project.id,
            delivery_id=delivery_id,
            event=event_name,
            action=action,
            headers=repo.kept_headers(headers),
            body=base64.b64encode(body).decode() if len(body) <= WEBHOOK_BODY_IN_EVENT_MAX else None,
            received_at=datetime.now(UTC),
        )
        await add_events(
            session, [PendingEvent(backbone.topics.webhooks, new_envelope(payload, key=str(project.id)))]
        )
    await session.commit()
    backbone.wake_relay()
    log.info("webhook received", provider=provider, delivery_id=delivery_id, outcome=verdict.outcome)
    ack = DeliveryAck(delivery_id=delivery_id, id=row_id, outcome=verdict.outcome, reason=verdict.reason)
    return Response(ack.model_dump_json(), status_code=202, media_type="application/json")


def _out(d: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        id=d.id,
        provider=d.provider,
        event=d.event,
        action=d.action,
        delivery_id=d.delivery_id,
        received_at=d.received_at,
        outcome=d.outcome,
        reason=d.reason,
        run_id=d.run_id,
        redeliveries=d.redeliveries,
    )


@router.get(
    "/projects/{project_id}/webhooks/deliveries",
    summary="List a project's webhook deliveries",
    description="Newest first: host, event, delivery id, received at, outcome (accepted / duplicate / "
    "rejected / ignored), reason and the run it started.",
    response_model=DeliveryList,
    responses=problem_responses(401, 403, 404, 422),
)
async def list_deliveries(
    access: Annotated[ProjectAccess, project_permit(Action.MANAGE_WEBHOOKS)],
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Cursor = None,
) -> DeliveryList:
    try:
        before = uuid.UUID(decode_cursor(cursor)) if cursor else None
    except (CursorError, ValueError):
        raise ValidationFailed(
            "Invalid cursor.", errors=[("query.cursor", "is not a cursor from this list")]
        ) from None
    rows = await repo.list_deliveries(session, access.project.id, limit=limit + 1, before=before)
    page = rows[:limit]
    return DeliveryList(
        data=[_out(d) for d in page],
        next_cursor=encode_cursor(str(page[-1].id)) if len(rows) > limit else None,
    )


@router.post(
    "/projects/{project_id}/webhooks/deliveries/{delivery_id}/redeliver",
    summary="Re-drive a stored delivery",
    description="Idempotent: a delivery that already started its run is not run again unless "
    "`force=true`. Rejected deliveries cannot be re-driven.",
    status_code=202,
    response_model=RedeliverAccepted,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def redeliver(
    access: Annotated[ProjectAccess, project_permit(Action.REPLAY)],
    user: CurrentUser,
    session: SessionDep,
    backbone: BackboneDep,
    delivery_id: Annotated[uuid.UUID, Path()],
    force: Annotated[bool, Query(description="Run again even if it already started a run.")] = False,
) -> RedeliverAccepted:
    delivery = await repo.get_delivery(session, delivery_id, for_update=True)
    if delivery is None or delivery.project_id != access.project.id:
        raise NotFound(f"No delivery {delivery_id} in this project.")
    if delivery.outcome == "rejected":
        raise Conflict(
            f"Delivery {delivery_id} was rejected ({delivery.reason}); there is nothing to re-drive."
        )
    if delivery.run_id is not None and not force:
        return RedeliverAccepted(id=delivery.id, status="already_delivered", run_id=delivery.run_id)
    payload = WebhookReceived(
        delivery_row_id=delivery.id, provider=delivery.provider, project_id=access.project.id, forced=force
    )
    await add_events(
        session, [PendingEvent(backbone.topics.webhooks, new_envelope(payload, key=str(access.project.id)))]
    )
    await repo.count_redelivery(session, delivery.id)
    await audit.record(
        session,
        action=audit.WEBHOOK_REPLAYED,
        actor_id=user.id,
        target_type="webhook_delivery",
        target_id=delivery.id,
        project_id=access.project.id,
        details={"forced": force, "delivery_id": delivery.delivery_id},
    )
    await session.commit()
    backbone.wake_relay()
    return RedeliverAccepted(id=delivery.id, status="redelivering")


@router.post(
    "/projects/{project_id}/webhooks/secret/rotate",
    summary="Rotate the webhook secret",
    description="A new secret (shown once) takes effect at once; the previous one keeps verifying "
    "for 24 hours so the Git host's configuration can be updated without losing deliveries.",
    response_model=SecretRotated,
    responses=problem_responses(401, 403, 404, 422),
)
async def rotate_secret(
    access: Annotated[ProjectAccess, project_permit(Action.MANAGE_WEBHOOKS)],
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
) -> SecretRotated:
    now = datetime.now(UTC)
    await repo.start_rotation(session, access.project.id, ROTATION_OVERLAP, now)
    box = SecretBox(settings.secret_key.get_secret_value())
    secret = await projects_repo.add_webhook_secret(session, box, access.project.id)
    await audit.record(
        session, action=audit.WEBHOOK_SECRET_ROTATED, actor_id=user.id, project_id=access.project.id
    )
    await session.commit()
    return SecretRotated(webhook_secret=secret, previous_valid_until=now + ROTATION_OVERLAP)
