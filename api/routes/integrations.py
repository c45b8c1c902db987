"""Integrations: provider settings of a project (for now, commit-status reporting to the Git
host), and the commit statuses a run produced — delivered, retrying or failed, with the error."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Response

from api.access import Action, ProjectAccess, ProjectAccessDep, RunAccessDep, project_permit
from api.deps import CurrentUser, JsonBody, SessionDep, SettingsDep
from api.errors import NotFound, problem_responses
from api.idempotency import Idempotent
from api.routes import API_PREFIX
from db.crypto import SecretBox
from db.models import Integration
from db.repositories import audit, commit_statuses, integrations
from schemas.api.integrations import (
    CommitStatusList,
    CommitStatusOut,
    IntegrationCreate,
    IntegrationList,
    IntegrationOut,
)

router = APIRouter(prefix=API_PREFIX, tags=["integrations"], dependencies=[JsonBody])


def _out(i: Integration) -> IntegrationOut:
    return IntegrationOut(id=i.id, kind=i.kind, config=i.config, enabled=i.enabled, created_at=i.created_at)


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
    "existing integration of the same kind.",
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
    config = body.config.model_dump(mode="json", exclude_none=True)
    integration = await integrations.replace(
        session,
        access.project.id,
        body.kind,
        config,
        commit_statuses.encrypt_token(box, access.project.id, body.token),
    )
    created = _out(integration)
    await idempotent.commit(created)
    return created


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
