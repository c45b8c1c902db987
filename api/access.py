"""Who may see and do what in a project, as dependencies for routes.

A project (or a run of a project) the caller cannot see answers 404, exactly like one that does
not exist; a visible one where the caller's role is too low answers 403 naming the role needed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from api.deps import CurrentUser, SessionDep
from api.errors import Forbidden, NotFound
from db.models import Run
from db.repositories import projects, run_views
from db.repositories.projects import ProjectAccess
from schemas.roles import Role


def require_role(role: Role, have: Role, action: str) -> None:
    if not have.at_least(role):
        raise Forbidden(f"To {action} you need the {role.value} role or higher; yours is {have.value}.")


async def project_access(project_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> ProjectAccess:
    access = await projects.get_visible(session, project_id, user)
    if access is None:
        raise NotFound(f"No project {project_id}.")
    return access


ProjectAccessDep = Annotated[ProjectAccess, Depends(project_access)]


@dataclass(frozen=True, slots=True)
class RunAccess:
    run: Run
    role: Role


async def run_access(run_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> RunAccess:
    run = await run_views.get_run(session, run_id)
    access = None if run is None else await projects.get_visible(session, run.project_id, user)
    if run is None or access is None:
        raise NotFound(f"No run {run_id}.")
    return RunAccess(run, access.role)


RunAccessDep = Annotated[RunAccess, Depends(run_access)]
