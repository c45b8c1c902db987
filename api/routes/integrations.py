"""Integrations: provider settings of a project — commit-status reporting to the Git host, and
outbound notifications (`webhook`, `slack`, docs/decisions/0024) with every delivery attempt — and
the commit statuses a run produced — delivered, retrying or failed, with the error."""

from __future__ import annotations

import secrets
import uuid
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Path, Query, Response

from api.access import Action, ProjectAccess, ProjectAccessDep, RunAccessDep, project_permit
from api.deps import CurrentUser, JsonBody, SessionDep, SettingsDep
from api.errors import NotFound, ValidationFailed, problem_responses
from api.idempotency import Idempotent
from api.routes import API_PREFIX, Cursor
from db.crypto import SecretBox
from db.models import Integration, NotificationAttempt, NotificationDelivery
from db.repositories import audit, commit_statuses, integrations, notifications
from orchestrator.outbound import resolve
from schemas.api.common import CursorError, decode_cursor, encode_cursor
from schemas.api.integrations import (
    CommitStatusConfig,
    CommitStatusList,
    CommitStatusOut,
    IntegrationCreate,
    IntegrationList,
    IntegrationOut,
    NotificationAttemptOut,
    NotificationDeliveryList,
    NotificationDeliveryOut,
)
from schemas.notifications import NotificationEvent
from schemas.outbound import OutboundRefused, parse_allow

router = APIRouter(prefix=API_PREFIX, tags=["integrations"], dependencies=[JsonBody])


def _out(i: Integration, secret: str | None = None) -> IntegrationOut:
    notifying = i.kind in notifications.KINDS
    return IntegrationOut(
        id=i.id,
        kind=i.kind,
        config=i.config,
        enabled=i.enabled,
        created_at=i.created_at,
        url=i.config.get("url") if notifying else None,
        events=list(i.config.get("events") or []) if notifying else None,
        secret=secret,
    )


def _shown_url(kind: str, url: str) -> str:
    """What listings show of a target: a Slack URL's host only (its path is the token), another
    URL without its query."""
    parts = urlsplit(url)
    if kind == "slack":
        return f"{parts.scheme}://{parts.netloc}/…"
    return parts._replace(query="", fragment="").geturl()


@router.get(
    "/projects/{project_id}/integrations",
    summary="List a project's integrations",
    description="Secrets (tokens) are never returned.",
    response_model=IntegrationList,
    responses=problem_responses(401, 404, 422),
)
async def list_integrations(access: ProjectAccessDep, session: SessionDep) -> IntegrationList:
    return IntegrationList(data=[_out(i) for i in await integrations.list_for(session, access.project.id)])


@router.post(
    "/projects/{project_id}/integrations",
    summary="Set up an integration",
    description="`commit_status`: report each run's state on its commit to the project's Git host "
    "(GitHub statuses, GitLab commit status, Bitbucket build status) with this token. Replaces an "
    "existing integration of the same kind.\n\n"
    "`webhook` / `slack` `{kind, url, events}`: send the chosen events (`run.finished`, `run.failed`, "
    "`deployment.started`, `deployment.finished`, `approval.requested`, `test.flaky`) to `url`, with "
    "retries and backoff, every attempt listed under `…/deliveries`. The URL must be https on a public "
    "address (checked now and at every send; a private or loopback address, or http, only for hosts "
    "`COMET_OUTBOUND_ALLOW` names): otherwise a 422 naming `body.url`. A `webhook` answer shows its "
    "signing `secret` once: each call carries `X-Comet-Signature: t=<unix seconds>,v1=<hex "
    'HMAC-SHA256 of "<t>.<body>">`, `X-Comet-Event` and `X-Comet-Delivery`. A project may have several.',
    status_code=201,
    response_model=IntegrationOut,
    responses=problem_responses(401, 403, 404, 413, 415, 422),
)
async def create_integration(
    access: Annotated[ProjectAccess, project_permit(Action.MANAGE_INTEGRATIONS)],
    user: CurrentUser,
    body: IntegrationCreate,
    session: SessionDep,
    settings: SettingsDep,
    idempotent: Idempotent,
) -> IntegrationOut:
    box = SecretBox(settings.secret_key.get_secret_value())
    secret: str | None = None
    problems = body.problems()
    if problems or (body.kind == "commit_status") != (body.token is not None):
        raise ValidationFailed(f"Invalid request: {', '.join(f for f, _ in problems)}.", errors=problems)
    if body.token is not None:
        config = (body.config or CommitStatusConfig()).model_dump(mode="json", exclude_none=True)
        integration = await integrations.replace(
            session,
            access.project.id,
            body.kind,
            config,
            commit_statuses.encrypt_token(box, access.project.id, body.token),
        )
    else:
        integration, secret = await _create_notification(
            session, box, access, body.kind, body.url or "", body.events or [], settings.outbound_allow
        )
    await audit.record(
        session,
        action=audit.INTEGRATION_SET,
        actor_id=user.id,
        target_type="integration",
        target_id=integration.id,
        project_id=access.project.id,
        details={"kind": integration.kind, **integration.config},
    )
    created = _out(integration, secret)
    await idempotent.commit(created)
    return created


async def _create_notification(
    session: SessionDep,
    box: SecretBox,
    access: ProjectAccess,
    kind: str,
    url: str,
    events: list[NotificationEvent],
    allow: str,
) -> tuple[Integration, str | None]:
    try:
        await resolve(url, parse_allow(allow))
    except OutboundRefused as exc:
        raise ValidationFailed(
            f"The notification URL is refused: it {exc}.", errors=[("body.url", str(exc))]
        ) from None
    secret = secrets.token_hex(32) if kind == "webhook" else None
    integration = await notifications.create(
        session,
        box,
        project_id=access.project.id,
        kind=kind,
        url=url,
        shown_url=_shown_url(kind, url),
        events=list(dict.fromkeys(events)),
        secret=secret,
    )
    return integration, secret


@router.delete(
    "/projects/{project_id}/integrations/{integration_id}",
    summary="Remove an integration",
    status_code=204,
    responses=problem_responses(401, 403, 404, 422),
)
async def delete_integration(
    access: Annotated[ProjectAccess, project_permit(Action.MANAGE_INTEGRATIONS)],
    user: CurrentUser,
    session: SessionDep,
    integration_id: Annotated[uuid.UUID, Path()],
) -> Response:
    if not await integrations.remove(session, access.project.id, integration_id):
        raise NotFound(f"No integration {integration_id} in this project.")
    await audit.record(
        session,
        action=audit.INTEGRATION_REMOVED,
        actor_id=user.id,
        target_type="integration",
        target_id=integration_id,
        project_id=access.project.id,
    )
    await session.commit()
    return Response(status_code=204)


def _delivery(d: NotificationDelivery, attempts: list[NotificationAttempt]) -> NotificationDeliveryOut:
    status = d.status if d.status in ("pending", "delivered", "failed") else "failed"
    return NotificationDeliveryOut(
        id=d.id,
        event=d.event,
        source_event_id=d.source_event_id,
        status=status,
        created_at=d.created_at,
        delivered_at=d.delivered_at,
        next_attempt_at=d.next_attempt_at if d.status == "pending" else None,
        attempts=[
            NotificationAttemptOut(
                number=a.number,
                started_at=a.started_at,
                duration_ms=a.duration_ms,
                http_status=a.http_status,
                error=a.error,
            )
            for a in attempts
        ],
    )


@router.get(
    "/projects/{project_id}/integrations/{integration_id}/deliveries",
    summary="An integration's notification deliveries",
    description="Newest first, cursor-paginated: each notification sent to this integration (its "
    "`X-Comet-Delivery` id, event, status — pending with its next try, delivered, or failed after the "
    "last try) with every attempt (when, how long, the receiver's HTTP status, the error). A "
    "`commit_status` integration has none here (see `GET /runs/{id}/commit-statuses`).",
    response_model=NotificationDeliveryList,
    responses=problem_responses(401, 404, 422),
)
async def list_notification_deliveries(
    access: ProjectAccessDep,
    session: SessionDep,
    integration_id: Annotated[uuid.UUID, Path()],
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Cursor = None,
) -> NotificationDeliveryList:
    if await notifications.get(session, access.project.id, integration_id) is None:
        raise NotFound(f"No integration {integration_id} in this project.")
    try:
        before = uuid.UUID(decode_cursor(cursor)) if cursor else None
    except (CursorError, ValueError):
        raise ValidationFailed(
            "Invalid cursor.", errors=[("query.cursor", "is not a cursor from this list")]
        ) from None
    rows = await notifications.deliveries_page(session, integration_id, limit=limit + 1, before=before)
    page = rows[:limit]
    return NotificationDeliveryList(
        data=[_delivery(d, attempts) for d, attempts in page],
        next_cursor=encode_cursor(str(page[-1][0].id)) if len(rows) > limit else None,
    )


@router.get(
    "/runs/{run_id}/commit-statuses",
    summary="Commit statuses reported for a run",
    description="Each state reported to the Git host: delivered, pending (retrying with backoff), "
    "superseded by a newer state, or failed with the host's answer.",
    response_model=CommitStatusList,
    responses=problem_responses(401, 404, 422),
)
async def run_commit_statuses(access: RunAccessDep, session: SessionDep) -> CommitStatusList:
    rows = await commit_statuses.reports_for_run(session, access.run.id)
    return CommitStatusList(
        data=[
            CommitStatusOut(
                provider=r.provider,
                state=r.state,
                status=r.status,
                attempts=r.attempts,
                http_status=r.http_status,
                error=r.error,
                created_at=r.created_at,
                delivered_at=r.delivered_at,
            )
            for r in rows
        ]
    )
