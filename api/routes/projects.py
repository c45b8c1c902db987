"""Projects and their members. Reads need viewer, changes maintainer, deletion owner; a project
you are not a member of is a 404 (admins see and may do everything, as owners)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from api.access import Action, ProjectAccessDep, project_permit
from api.deps import CurrentUser, JsonBody, SessionDep, SettingsDep
from api.errors import Conflict, NotFound, ValidationFailed, problem_responses
from api.idempotency import Idempotent
from api.permissions import check_grant
from api.routes import API_PREFIX, Cursor
from db.crypto import SecretBox
from db.repositories import audit, projects, users
from db.repositories.errors import AlreadyExistsError
from db.repositories.projects import ProjectAccess
from schemas.api.common import CursorError, Page, decode_cursor, encode_cursor
from schemas.api.projects import (
    HOSTED_PROVIDERS,
    MemberOut,
    MemberUpdate,
    ProjectCreate,
    ProjectCreated,
    ProjectOut,
    ProjectUpdate,
)
from schemas.roles import Role

router = APIRouter(prefix=f"{API_PREFIX}/projects", tags=["projects"], dependencies=[JsonBody])

_NOT_NULL = ("name", "repo_url", "default_branch")


def _out(access: ProjectAccess) -> ProjectOut:
    p = access.project
    return ProjectOut(
        id=p.id,
        name=p.name,
        repo_url=p.repo_url,
        default_branch=p.default_branch,
        provider=p.provider,
        provider_repo=p.provider_repo,
        role=access.role,
        auto_quarantine_flip_rate=p.auto_quarantine_flip_rate,
        created_at=p.created_at,
        updated_at=p.updated_at,
    )


@router.post(
    "",
    summary="Create a project",
    description="You become its owner. The response carries the project's webhook secret: it is "
    "shown this once only.",
    status_code=201,
    response_model=ProjectCreated,
    responses=problem_responses(401, 409, 413, 415, 422),
)
async def create_project(
    body: ProjectCreate, user: CurrentUser, session: SessionDep, settings: SettingsDep, idempotent: Idempotent
) -> ProjectCreated:
    try:
        project, secret = await projects.create_project(
            session,
            SecretBox(settings.secret_key.get_secret_value()),
            owner_id=user.id,
            name=body.name,
            repo_url=body.repo_url,
            default_branch=body.default_branch,
            provider=body.provider,
            provider_repo=body.provider_repo,
        )
    except AlreadyExistsError as exc:
        raise Conflict(f"{exc.what[:1].upper()}{exc.what[1:]}.") from None
    out = _out(ProjectAccess(project, Role.OWNER))
    created = ProjectCreated(**out.model_dump(), webhook_secret=secret)
    await idempotent.commit(created, location=f"{API_PREFIX}/projects/{project.id}")
    return created


@router.get(
    "",
    summary="List the projects you can see",
    response_model=Page[ProjectOut],
    responses=problem_responses(401, 422),
)
async def list_projects(
    user: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Cursor = None,
) -> Page[ProjectOut]:
    try:
        after = decode_cursor(cursor) if cursor is not None else None
    except CursorError as exc:
        raise ValidationFailed(errors=[("query.cursor", str(exc))]) from None
    found = await projects.list_visible(session, user, limit=limit + 1, after_name=after)
    page = found[:limit]
    next_cursor = encode_cursor(page[-1].project.name) if len(found) > limit else None
    return Page[ProjectOut](data=[_out(a) for a in page], next_cursor=next_cursor)


@router.get(
    "/{project_id}",
    summary="Get a project",
    response_model=ProjectOut,
    responses=problem_responses(401, 404, 422),
)
async def get_project(access: ProjectAccessDep) -> ProjectOut:
    return _out(access)


@router.patch(
    "/{project_id}",
    summary="Change a project (maintainer or owner)",
    response_model=ProjectOut,
    responses=problem_responses(401, 403, 404, 409, 413, 415, 422),
)
async def update_project(
    body: ProjectUpdate,
    access: Annotated[ProjectAccess, project_permit(Action.CONFIGURE)],
    session: SessionDep,
) -> ProjectOut:
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    errors = [(f"body.{k}", "must not be null") for k in _NOT_NULL if k in changes and changes[k] is None]
    dropped_repo = "provider_repo" in changes and changes["provider_repo"] is None
    if dropped_repo and access.project.provider in HOSTED_PROVIDERS:
        errors.append(("body.provider_repo", "is required for github, gitlab and bitbucket projects"))
    if errors:
        raise ValidationFailed(errors=errors)
    try:
        project = await projects.update_project(session, access.project, changes)
    except AlreadyExistsError as exc:
        raise Conflict(f"{exc.what[:1].upper()}{exc.what[1:]}.") from None
    await session.commit()
    return _out(ProjectAccess(project, access.role))


@router.delete(
    "/{project_id}",
    summary="Delete a project and everything in it (owner)",
    status_code=204,
    response_class=Response,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def delete_project(
    access: Annotated[ProjectAccess, project_permit(Action.DELETE)], user: CurrentUser, session: SessionDep
) -> Response:
    unfinished = await projects.unfinished_runs(session, access.project.id)
    if unfinished:
        raise Conflict(f"The project has {unfinished} unfinished run(s); cancel them first.")
    await projects.delete_project(session, access.project.id)
    await audit.record(
        session,
        action=audit.PROJECT_DELETED,
        actor_id=user.id,
        target_type="project",
        target_id=access.project.id,
        details={"name": access.project.name},
    )
    await session.commit()
    return Response(status_code=204)


@router.put(
    "/{project_id}/members/{user_id}",
    summary="Give a user a role in the project (maintainer or owner)",
    description="Nobody grants a role above their own, nor changes the role of someone above them; "
    "the last owner stays an owner.",
    response_model=MemberOut,
    responses=problem_responses(401, 403, 404, 409, 413, 415, 422),
)
async def set_member(
    user_id: uuid.UUID,
    body: MemberUpdate,
    access: Annotated[ProjectAccess, project_permit(Action.MANAGE_MEMBERS)],
    user: CurrentUser,
    session: SessionDep,
) -> MemberOut:
    project_id = access.project.id
    check_grant(access.role, body.role, None)
    target = await users.get(session, user_id)
    if target is None or not target.is_active:
        raise NotFound(f"No user {user_id}.")
    current = await projects.member_role(session, project_id, user_id)
    if current is not None:
        check_grant(access.role, body.role, current)
        demoted_owner = current is Role.OWNER and body.role is not Role.OWNER
        if demoted_owner and await projects.owner_count(session, project_id) <= 1:
            raise Conflict("This is the project's last owner; make someone else owner first.")
    await projects.set_member_role(session, project_id, user_id, body.role)
    await audit.record(
        session,
        action=audit.MEMBER_ROLE_SET,
        actor_id=user.id,
        target_type="user",
        target_id=user_id,
        project_id=project_id,
        details={"role": body.role.value, "previous": current.value if current else None},
    )
    await session.commit()
    return MemberOut(project_id=project_id, user_id=user_id, role=body.role)
