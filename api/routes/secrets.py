"""Project secrets: maintainers set and delete them; anyone who can read the project sees their
names, never their values. Workers inject them into stages and mask them in logs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from api.access import Action, ProjectAccess, ProjectAccessDep, project_permit
from api.deps import CurrentUser, JsonBody, SessionDep, SettingsDep
from api.errors import NotFound, ValidationFailed, problem_responses
from api.routes import API_PREFIX
from db.crypto import SecretBox
from db.repositories import audit, secrets
from schemas.api.secrets import ENV_NAME_PATTERN, SecretList, SecretPut

router = APIRouter(prefix=f"{API_PREFIX}/projects", tags=["projects"], dependencies=[JsonBody])

NameParam = Annotated[
    str,
    Path(pattern=ENV_NAME_PATTERN, description="An environment variable name (not starting with COMET_)."),
]


@router.get(
    "/{project_id}/secrets",
    summary="List a project's secret names",
    response_model=SecretList,
    responses=problem_responses(401, 404, 422),
)
async def list_secrets(access: ProjectAccessDep, session: SessionDep) -> SecretList:
    return SecretList(data=await secrets.secret_names(session, access.project.id))


@router.put(
    "/{project_id}/secrets/{name}",
    summary="Set a secret",
    description="Stored encrypted; stages see it as an environment variable, masked in their logs. "
    "Pull requests from forks never get secrets.",
    status_code=204,
    responses=problem_responses(401, 403, 404, 413, 415, 422),
)
async def put_secret(
    access: Annotated[ProjectAccess, project_permit(Action.MANAGE_SECRETS)],
    body: SecretPut,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    name: NameParam,
) -> Response:
    if name.upper().startswith("COMET_"):
        raise ValidationFailed(
            "Names starting with COMET_ are reserved for Comet's own variables.",
            errors=[("path.name", "must not start with COMET_")],
        )
    box = SecretBox(settings.secret_key.get_secret_value())
    await secrets.put_secret(session, box, access.project.id, name, body.value)
    await audit.record(
        session,
        action=audit.SECRET_SET,
        actor_id=user.id,
        target_type="secret",
        target_id=name,
        project_id=access.project.id,
    )
    await session.commit()
    return Response(status_code=204)


@router.delete(
    "/{project_id}/secrets/{name}",
    summary="Delete a secret",
    status_code=204,
    responses=problem_responses(401, 403, 404, 422),
)
async def delete_secret(
    access: Annotated[ProjectAccess, project_permit(Action.MANAGE_SECRETS)],
    user: CurrentUser,
    session: SessionDep,
    name: NameParam,
) -> Response:
    if not await secrets.delete_secret(session, access.project.id, name):
        raise NotFound(f"No secret {name} in this project.")
    await audit.record(
        session,
        action=audit.SECRET_DELETED,
        actor_id=user.id,
        target_type="secret",
        target_id=name,
        project_id=access.project.id,
    )
    await session.commit()
    return Response(status_code=204)
