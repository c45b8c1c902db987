"""Runs: trigger (202 once durable), list, inspect, cancel, retry, read or follow a stage's log, and
read the run's event history. Triggering, cancelling and retrying need developer; reading viewer.

Writes go to Postgres together with their outbox event in one transaction; after the commit the
relay is woken to publish. Kafka being down delays the publication, never the 202.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import PlainTextResponse, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import (
    Action,
    ProjectAccess,
    ProjectAccessDep,
    RunAccess,
    RunAccessDep,
    project_permit,
    run_permit,
)
from api.deps import BackboneDep, CurrentUser, JsonBody, SessionDep
from api.errors import Conflict, Forbidden, NotFound, ValidationFailed, problem_responses
from api.idempotency import Idempotent
from api.logstream import Follow, parse_last_event_id, stored_log
from api.middleware import current_request_id
from api.routes import API_PREFIX, Cursor
from api.routes.tests import run_results
from db.models import Run
from db.repositories import audit, deployment_commands, run_commands, run_views
from db.repositories import deployments as deployments_repo
from db.repositories.errors import StateConflictError
from db.repositories.runs import create_run
from events.backbone import Backbone
from schemas.api.common import CursorError, Page, decode_cursor, encode_cursor
from schemas.api.runs import (
    AttemptOut,
    RunAccepted,
    RunCommandAccepted,
    RunCreate,
    RunDeadLetterOut,
    RunEventOut,
    RunOut,
    RunSummary,
    StageOut,
    normalise_ref,
)
from schemas.api.tests import ResultSummary
from schemas.states import AttemptStatus, RunStatus, StageStatus

router = APIRouter(prefix=API_PREFIX, tags=["runs"], dependencies=[JsonBody])

_LOG_CONTENT: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The log as plain text; with `follow` or `Accept: text/event-stream`, streamed live.",
        "content": {
            "text/plain": {"schema": {"type": "string"}},
            "text/event-stream": {"schema": {"type": "string"}},
        },
    }
}


def _summary(run: Run) -> RunSummary:
    return RunSummary(
        id=run.id,
        project_id=run.project_id,
        number=run.number,
        status=RunStatus(run.status),
        ref=run.ref,
        sha=run.sha,
        trigger=run.trigger,
        pipeline_name=run.pipeline_name,
        failure_reason=run.failure_reason,
        retries=run.retries,
        cancel_requested_at=run.cancel_requested_at,
        created_at=run.created_at,
        queued_at=run.queued_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
    )


def _stage(view: run_views.StageView, tests: ResultSummary | None = None) -> StageOut:
    s, current = view.stage, view.current
    return StageOut(
        name=s.name,
        status=StageStatus(s.status),
        attempt=s.attempt,
        worker_id=current.worker_id if current else None,
        exit_code=s.exit_code,
        failure_kind=s.failure_kind,
        failure_reason=s.failure_reason,
        note=s.note,
        needs=list(s.needs),
        pool=s.pool,
        matrix=s.matrix,
        queued_at=s.queued_at,
        started_at=s.started_at,
        finished_at=s.finished_at,
        attempts=[
            AttemptOut(
                number=a.number,
                status=AttemptStatus(a.status),
                worker_id=a.worker_id,
                exit_code=a.exit_code,
                failure_kind=a.failure_kind,
                failure_reason=a.failure_reason,
                queued_at=a.queued_at,
                started_at=a.started_at,
                finished_at=a.finished_at,
            )
            for a in view.attempts
        ],
        tests=tests,
    )


@router.post(
    "/projects/{project_id}/runs",
    summary="Trigger a run",
    description="Answers 202 as soon as the run is durable; it is planned and dispatched "
    "asynchronously. `GET /runs/{run_id}` works right away. Send an `Idempotency-Key` to make "
    "retries safe: a retry gets the same run instead of a second one.",
    status_code=202,
    response_model=RunAccepted,
    responses=problem_responses(401, 403, 404, 413, 415, 422),
)
async def trigger_run(
    body: RunCreate,
    access: Annotated[ProjectAccess, project_permit(Action.TRIGGER)],
    user: CurrentUser,
    session: SessionDep,
    backbone: BackboneDep,
    idempotent: Idempotent,
) -> RunAccepted:
    run = await create_run(
        session,
        backbone.topics,
        project_id=access.project.id,
        ref=body.ref,
        sha=body.sha,
        trigger={"kind": "api", "actor": str(user.id), "event": "manual"},
        variables=body.variables,
        created_by=user.id,
        correlation_id=current_request_id(),
    )
    url = f"{API_PREFIX}/runs/{run.id}"
    accepted = RunAccepted(
        run_id=run.id, project_id=run.project_id, number=run.number, ref=run.ref, sha=run.sha, url=url
    )
    await idempotent.commit(accepted, location=url)
    backbone.wake_relay()
    return accepted


@router.get(
    "/projects/{project_id}/runs",
    summary="List a project's runs, newest first",
    response_model=Page[RunSummary],
    responses=problem_responses(401, 404, 422),
)
async def list_runs(
    access: ProjectAccessDep,
    session: SessionDep,
    status: Annotated[RunStatus | None, Query(description="Only runs in this status.")] = None,
    ref: Annotated[
        str | None, Query(description="Only runs of this ref (`main` = `refs/heads/main`).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Cursor = None,
) -> Page[RunSummary]:
    errors: list[tuple[str, str]] = []
    before: uuid.UUID | None = None
    if cursor is not None:
        try:
            before = uuid.UUID(decode_cursor(cursor))
        except (CursorError, ValueError):
            errors.append(("query.cursor", "is not a cursor returned by this API"))
    if ref is not None:
        try:
            ref = normalise_ref(ref)
        except ValueError as exc:
            errors.append(("query.ref", str(exc)))
    if errors:
        raise ValidationFailed(errors=errors)
    runs = await run_views.list_runs(
        session,
        access.project.id,
        limit=limit + 1,
        before=before,
        status=status.value if status else None,
        ref=ref,
    )
    page = runs[:limit]
    next_cursor = encode_cursor(str(page[-1].id)) if len(runs) > limit else None
    return Page[RunSummary](data=[_summary(r) for r in page], next_cursor=next_cursor)


@router.get(
    "/runs/{run_id}",
    summary="Get a run with its stages",
    response_model=RunOut,
    responses=problem_responses(401, 404, 422),
)
async def get_run(access: RunAccessDep, session: SessionDep) -> RunOut:
    stages = await run_views.stages_of(session, access.run.id)
    dead = await run_views.dead_letters_of(session, access.run.id)
    results = await run_results(session, access.run.id)
    by_stage = {r.stage: r.summary for r in results.stages}
    has_tests = any(r.summary is not None for r in results.stages)
    return RunOut(
        **_summary(access.run).model_dump(),
        stages=[_stage(v, by_stage.get(v.stage.name)) for v in stages],
        tests=results.summary if has_tests else None,
        dead_letters=[
            RunDeadLetterOut(
                id=d.id,
                consumer=d.consumer,
                event_id=d.event_id,
                event_type=d.event_type,
                reason=d.reason,
                created_at=d.created_at,
                redriven_at=d.redriven_at,
            )
            for d in dead
        ],
    )


async def _accepted(
    command: Awaitable[run_commands.Recorded],
    requested: Literal["cancel", "retry", "approve"],
    session: AsyncSession,
    backbone: Backbone,
) -> RunCommandAccepted:
    """Record a run command (its outbox event), commit, wake the relay: 202, or 409 when the run's
    state does not allow it."""
    try:
        recorded = await command
    except StateConflictError as exc:
        raise Conflict(str(exc)) from None
    await session.commit()
    backbone.wake_relay()
    return RunCommandAccepted(
        run_id=recorded.run_id, status=recorded.status, requested=requested, event_id=recorded.event_id
    )


@router.post(
    "/runs/{run_id}/cancel",
    summary="Cancel a run",
    description="Recorded at once (202); the orchestrator stops the run's stages. 409 when the run "
    "has already finished.",
    status_code=202,
    response_model=RunCommandAccepted,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def cancel_run(
    access: Annotated[RunAccess, run_permit(Action.CANCEL)],
    user: CurrentUser,
    session: SessionDep,
    backbone: BackboneDep,
) -> RunCommandAccepted:
    command = run_commands.request_cancel(
        session,
        backbone.topics,
        access.run.id,
        actor_id=user.id,
        reason=f"cancelled by {user.email}",
        correlation_id=current_request_id(),
    )
    return await _accepted(command, "cancel", session, backbone)


@router.post(
    "/runs/{run_id}/retry",
    summary="Re-run a run's failed, cancelled and skipped stages",
    description="Only a failed or cancelled run can be retried (409 otherwise).",
    status_code=202,
    response_model=RunCommandAccepted,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def retry_run(
    access: Annotated[RunAccess, run_permit(Action.RETRY)],
    user: CurrentUser,
    session: SessionDep,
    backbone: BackboneDep,
) -> RunCommandAccepted:
    command = run_commands.request_retry(
        session, backbone.topics, access.run.id, actor_id=user.id, correlation_id=current_request_id()
    )
    return await _accepted(command, "retry", session, backbone)


@router.post(
    "/runs/{run_id}/stages/{stage}/approve",
    summary="Approve a stage waiting at its approval gate",
    description="For stages with `approval: true` (status `waiting_approval`): the stage is queued "
    "and runs. 409 when the stage is not waiting for approval. For a stage that deploys, this is an "
    "approval of its deployment (`POST /deployments/{id}/approve`, one mechanism): its environment's "
    "rules apply (distinct people; 403 for the person who triggered the run where self-approval is "
    "forbidden).",
    status_code=202,
    response_model=RunCommandAccepted,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def approve_stage(
    access: Annotated[RunAccess, run_permit(Action.APPROVE_DEPLOYS)],
    stage: str,
    user: CurrentUser,
    session: SessionDep,
    backbone: BackboneDep,
) -> RunCommandAccepted:
    deployment = await deployments_repo.latest_of_stage(session, access.run.id, stage)
    if deployment is not None and deployment.status == "waiting":
        return await _approve_deployment(access, deployment.id, user, session, backbone)
    command = run_commands.request_approval(
        session, backbone.topics, access.run.id, stage, actor_id=user.id, correlation_id=current_request_id()
    )
    try:
        return await _accepted(command, "approve", session, backbone)
    except LookupError:
        raise NotFound(f"Run {access.run.id} has no stage {stage}.") from None


async def _approve_deployment(
    access: RunAccess, deployment_id: uuid.UUID, user: CurrentUser, session: SessionDep, backbone: BackboneDep
) -> RunCommandAccepted:
    try:
        recorded = await deployment_commands.request_review(
            session,
            backbone.topics,
            deployment_id,
            user_id=user.id,
            reviewer=user.email,
            decision="approved",
            comment="",
            correlation_id=current_request_id(),
        )
    except StateConflictError as exc:
        raise Conflict(str(exc)) from None
    except deployment_commands.ReviewForbiddenError as exc:
        raise Forbidden(str(exc)) from None
    await audit.record(
        session,
        action=audit.DEPLOYMENT_APPROVED,
        actor_id=user.id,
        target_type="deployment",
        target_id=deployment_id,
        project_id=access.run.project_id,
        details={"comment": "", "run_id": str(access.run.id)},
    )
    await session.commit()
    backbone.wake_relay()
    return RunCommandAccepted(
        run_id=access.run.id,
        status=RunStatus(access.run.status),
        requested="approve",
        event_id=recorded.event_id,
    )


@router.get(
    "/runs/{run_id}/stages/{stage}/logs",
    summary="A stage's log, or follow it live",
    description="Plain text of the stage's latest attempt (or `?attempt=N`). With `follow=true` the "
    "response streams new output as it is stored until the stage (or the given attempt) ends; with "
    "`Accept: text/event-stream` it streams Server-Sent Events: one `data:` frame per chunk "
    "(id `<attempt>:<seq>`, resumable with `Last-Event-ID`), `event: attempt` when a retry "
    "starts, and a final `event: end`.",
    response_class=PlainTextResponse,
    responses={**_LOG_CONTENT, **problem_responses(401, 404, 422)},
)
async def stage_log(
    stage: str,
    access: RunAccessDep,
    session: SessionDep,
    backbone: BackboneDep,
    attempt: Annotated[int | None, Query(ge=1, description="Attempt number; default the latest.")] = None,
    follow: Annotated[bool, Query(description="Stream until the stage ends.")] = False,
    accept: Annotated[str | None, Header()] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Response:
    row = await run_views.get_stage(session, access.run.id, stage)
    if row is None:
        raise NotFound(f"The run has no stage {stage!r}.")
    found = await run_views.get_attempt(session, row.id, attempt)
    if attempt is not None and found is None:
        raise NotFound(f"Stage {stage!r} has no attempt {attempt}.")
    sse = "text/event-stream" in (accept or "")
    if not (follow or sse):
        if found is None:
            return PlainTextResponse("")
        return StreamingResponse(
            stored_log(backbone.sessions, found.id), media_type="text/plain; charset=utf-8"
        )
    start, after_seq = attempt, -1
    resume = parse_last_event_id(last_event_id) if sse else None
    if resume is not None:
        start, after_seq = resume
    streamer = Follow(
        backbone.sessions,
        row.id,
        attempt=start,
        pinned=attempt is not None,
        after_seq=after_seq,
        fmt="sse" if sse else "text",
    )
    media_type = "text/event-stream" if sse else "text/plain; charset=utf-8"
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(streamer.stream(), media_type=media_type, headers=headers)


@router.get(
    "/runs/{run_id}/events",
    summary="The run's event history, in order",
    response_model=Page[RunEventOut],
    responses=problem_responses(401, 404, 422),
)
async def run_events(
    access: RunAccessDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    cursor: Cursor = None,
) -> Page[RunEventOut]:
    after = 0
    if cursor is not None:
        try:
            after = int(decode_cursor(cursor))
        except (CursorError, ValueError):
            raise ValidationFailed(
                errors=[("query.cursor", "is not a cursor returned by this API")]
            ) from None
    events = await run_views.run_events(session, access.run.id, after_seq=after, limit=limit + 1)
    page = events[:limit]
    data = [
        RunEventOut(
            seq=e.seq,
            event_id=e.envelope["event_id"],
            type=e.envelope["type"],
            topic=e.topic,
            key=e.envelope["key"],
            occurred_at=e.envelope["occurred_at"],
            correlation_id=e.envelope["correlation_id"],
            causation_id=e.envelope.get("causation_id"),
            schema_version=e.envelope.get("schema_version", 1),
            payload=e.envelope["payload"],
            published_at=e.published_at,
        )
        for e in page
    ]
    next_cursor = encode_cursor(str(page[-1].seq)) if len(events) > limit else None
    return Page[RunEventOut](data=data, next_cursor=next_cursor)
