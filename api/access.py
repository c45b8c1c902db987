"""Who may see and do what in a project: the one enforcement point of `api/permissions.py`.

A route scoped to a project or a run declares the action it performs:

    access: Annotated[ProjectAccess, project_permit(Action.MANAGE_SECRETS)]
    access: Annotated[RunAccess, run_permit(Action.CANCEL)]

and the dependency does, in this order: find the project (or the run's project) among those the
caller can see -> 404 if it is not there, exactly like one that does not exist (so another
project's run, stage, log or delivery is a 404 too); apply the permission table to the caller's
role -> 403 naming the role needed; count rate-limited actions (trigger, cancel, retry) against
the caller's `trigger` bucket -> 429. The token-scope check for the same action happens when the
caller is authenticated (`api/deps.py`), from the same declaration.

`ProjectAccessDep` / `RunAccessDep` are `read` permits. `require_role` is kept for routes not yet
moved to a declared action: it checks a bare role, and such routes need the `admin` token scope
for any change (they declare no changing action).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from api import ratelimit
from api.deps import CurrentPrincipal, SessionDep
from api.errors import NotFound
from api.permissions import RATE_LIMITED, Action, ActionDependency, authorize, require_at_least
from db.models import Run
from db.repositories import projects, run_views
from db.repositories.projects import ProjectAccess
from schemas.roles import Role

__all__ = [
    "Action",
    "ProjectAccess",
    "ProjectAccessDep",
    "ProjectPermit",
    "RunAccess",
    "RunAccessDep",
    "RunPermit",
    "project_permit",
    "require_role",
    "run_permit",
]


def require_role(role: Role, have: Role, action: str) -> None:
    """A bare role check (prefer declaring the route's action with `project_permit`)."""
    require_at_least(role, have, action)


@dataclass(frozen=True, slots=True)
class RunAccess:
    run: Run
    role: Role


async def _permit(request: Request, role: Role, action: Action, user_id: uuid.UUID) -> None:
    authorize(role, action)
    bucket = RATE_LIMITED.get(action)
    if bucket is not None:
        await ratelimit.enforce_for_user(request, bucket, user_id)


class ProjectPermit(ActionDependency):
    """The project in the path, if the caller can see it and may perform `action` in it."""

    action: Action

    def __init__(self, action: Action) -> None:
        self.action = action

    async def __call__(
        self, project_id: uuid.UUID, request: Request, principal: CurrentPrincipal, session: SessionDep
    ) -> ProjectAccess:
        access = await projects.get_visible(session, project_id, principal.user)
        if access is None:
            raise NotFound(f"No project {project_id}.")
        await _permit(request, access.role, self.action, principal.user_id)
        return access


class RunPermit(ActionDependency):
    """The run in the path, if the caller can see its project and may perform `action` in it."""

    action: Action

    def __init__(self, action: Action) -> None:
        self.action = action

    async def __call__(
        self, run_id: uuid.UUID, request: Request, principal: CurrentPrincipal, session: SessionDep
    ) -> RunAccess:
        run = await run_views.get_run(session, run_id)
        access = None if run is None else await projects.get_visible(session, run.project_id, principal.user)
        if run is None or access is None:
            raise NotFound(f"No run {run_id}.")
        await _permit(request, access.role, self.action, principal.user_id)
        return RunAccess(run, access.role)


def project_permit(action: Action) -> Any:
    """`Depends` on the project in the path, permitted for `action` (use inside `Annotated`)."""
    return Depends(ProjectPermit(action))


def run_permit(action: Action) -> Any:
    """`Depends` on the run in the path, permitted for `action` (use inside `Annotated`)."""
    return Depends(RunPermit(action))


ProjectAccessDep = Annotated[ProjectAccess, project_permit(Action.READ)]
RunAccessDep = Annotated[RunAccess, run_permit(Action.READ)]
