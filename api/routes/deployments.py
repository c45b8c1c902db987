"""Environments (protection rules, current deployment, the line waiting for it), deployments with
their reviews, approving and rejecting them, and rolling an environment back (decision 0027).

Reviews and rollbacks are recorded as events (202): the orchestrator applies them through
`decide()`. Configuring environments and reviewing need maintainer; reading viewer.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.convertors import Convertor, register_url_convertor

from api.access import Action, ProjectAccess, ProjectAccessDep, project_permit
from api.deps import BackboneDep, CurrentPrincipal, CurrentUser, JsonBody, SessionDep
from api.errors import Conflict, Forbidden, NotFound, ValidationFailed, problem_responses
from api.idempotency import Idempotent
from api.middleware import current_request_id
from api.permissions import ActionDependency, authorize
from api.routes import API_PREFIX, Cursor
from db.models import Deployment, Environment
from db.repositories import audit, deployment_commands, projects
from db.repositories import deployments as repo
from db.repositories.errors import StateConflictError
from schemas.api.common import CursorError, Page, decode_cursor, encode_cursor
from schemas.api.deployments import (
    ApprovalOut,
    DeploymentOut,
    EnvironmentList,
    EnvironmentOut,
    EnvironmentPut,
    ReviewAccepted,
    ReviewIn,
    RollbackAccepted,
    RollbackIn,
)
from schemas.deployments import ENVIRONMENT_NAME_RULE, valid_environment_name
from schemas.roles import Role

router = APIRouter(prefix=API_PREFIX, tags=["deployments"], dependencies=[JsonBody])

EnvironmentName = Annotated[
    str,
    Path(
        description=f"The environment's name: {ENVIRONMENT_NAME_RULE}.",
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
    ),
]


def _checked_name(name: str) -> str:
    if not valid_environment_name(name):
        raise ValidationFailed(
            f"Invalid environment name {name!r}: {ENVIRONMENT_NAME_RULE}.",
            errors=[("path.name", ENVIRONMENT_NAME_RULE)],
        )
    return name


@dataclass(frozen=True, slots=True)
class DeploymentAccess:
    deployment: Deployment
    role: Role


class DeploymentPermit(ActionDependency):
    """The deployment in the path, if the caller can see its project and may perform `action`."""

    action: Action

    def __init__(self, action: Action) -> None:
        self.action = action

    async def __call__(
        self, deployment_id: uuid.UUID, request: Request, principal: CurrentPrincipal, session: SessionDep
    ) -> DeploymentAccess:
        deployment = await repo.get(session, deployment_id)
        access = (
            None
            if deployment is None
            else await projects.get_visible(session, deployment.project_id, principal.user)
        )
        if deployment is None or access is None:
            raise NotFound(f"No deployment {deployment_id}.")
        authorize(access.role, self.action)
        return DeploymentAccess(deployment, access.role)


def _out(d: Deployment) -> DeploymentOut:
    return DeploymentOut(
        id=d.id,
        project_id=d.project_id,
        environment=d.environment,
        status=d.status,
        reason=d.reason,
        sha=d.sha,
        ref=d.ref,
        run_id=d.run_id,
        stage=d.stage,
        url=d.url,
        rollback_of=d.rollback_of,
        triggered_by=d.triggered_by,
        required_approvals=d.required_approvals,
        approvals=[ApprovalOut.model_validate(a) for a in d.approvals],
        created_at=d.created_at,
        started_at=d.started_at,
        finished_at=d.finished_at,
    )


async def _environment(
    session: SessionDep, project_id: uuid.UUID, name: str, env: Environment | None
) -> EnvironmentOut:
    current = await repo.current(session, project_id, name)
    waiting = await repo.waiting_in(session, project_id, name)
    return EnvironmentOut(
        name=name,
        configured=env is not None,
        required_approvals=env.required_approvals if env else 0,
        allow_self_approval=env.allow_self_approval if env else True,
        branches=list(env.branches) if env else [],
        wait_timer=env.wait_timer_s if env else 0.0,
        current=_out(current) if current else None,
        waiting=[_out(d) for d in waiting],
        updated_at=env.updated_at if env else None,
    )


@router.get(
    "/projects/{project_id}/environments",
    summary="A project's environments",
    description="Every configured environment and every one deployed to, with its protection rules, "
    "its current deployment and the deployments waiting for it (in line order, each with its reason).",
    response_model=EnvironmentList,
    responses=problem_responses(401, 404, 422),
)
async def list_environments(access: ProjectAccessDep, session: SessionDep) -> EnvironmentList:
    project_id = access.project.id
    configured = await repo.environments_of(session, project_id)
    names = await repo.environment_names(session, project_id)
    return EnvironmentList(
        data=[await _environment(session, project_id, n, configured.get(n)) for n in names]
    )


class _EnvironmentNameConvertor(Convertor[str]):
    """Like `path` — a name with a slash still reaches the route, to be refused as a name (422), not
    a 404 — except a path ending in `/rollback`, which is the rollback route's (so a 405 there names
    only POST in `Allow`)."""

    regex = r".+(?<!/rollback)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("environment", _EnvironmentNameConvertor())


@router.get(
    "/projects/{project_id}/environments/{name:environment}",
    summary="An environment",
    description="Its protection rules (the defaults when never configured), its current deployment "
    "and the deployments waiting for it. 404 when it was neither configured nor deployed to.",
    response_model=EnvironmentOut,
    responses=problem_responses(401, 404, 422),
)
async def get_environment(
    access: ProjectAccessDep, session: SessionDep, name: EnvironmentName
) -> EnvironmentOut:
    _checked_name(name)
    env = await repo.get_environment(session, access.project.id, name)
    if env is None and name not in await repo.environment_names(session, access.project.id):
        raise NotFound(f"No environment {name} in this project.")
    return await _environment(session, access.project.id, name, env)


@router.put(
    "/projects/{project_id}/environments/{name:environment}",
    summary="Create or replace an environment's protection rules",
    description="`required_approvals` (0–5, distinct people, maintainer or above), "
    "`allow_self_approval` (may the person who triggered the run approve it), `branches` (globs of the "
    "branches that may deploy here; empty: any), `wait_timer` (`10m` or seconds, after the approvals). "
    "Runs planned from now on deploy under these rules; one deployment at a time per environment. "
    "An environment name holds no path characters (422).",
    response_model=EnvironmentOut,
    responses=problem_responses(401, 403, 404, 413, 415, 422),
)
async def put_environment(
    access: Annotated[ProjectAccess, project_permit(Action.CONFIGURE)],
    user: CurrentUser,
    session: SessionDep,
    name: EnvironmentName,
    body: EnvironmentPut,
) -> EnvironmentOut:
    _checked_name(name)
    env, created = await repo.put_environment(
        session,
        access.project.id,
        name,
        required_approvals=body.required_approvals,
        allow_self_approval=body.allow_self_approval,
        branches=body.branches,
        wait_timer_s=body.wait_timer,
        now=datetime.now(UTC),
    )
    await audit.record(
        session,
        action=audit.ENVIRONMENT_SET,
        actor_id=user.id,
        target_type="environment",
        target_id=env.id,
        project_id=access.project.id,
        details={"name": name, "created": created, **body.model_dump(mode="json")},
    )
    out = await _environment(session, access.project.id, name, env)
    await session.commit()
    return out


@router.get(
    "/projects/{project_id}/deployments",
    summary="A project's deployments, newest first",
    description="Each with its status, reason, commit, run and stage, reviews and timings; "
    "`?environment=` for one environment's history.",
    response_model=Page[DeploymentOut],
    responses=problem_responses(401, 404, 422),
)
async def list_deployments(
    access: ProjectAccessDep,
    session: SessionDep,
    environment: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Cursor = None,
) -> Page[DeploymentOut]:
    before = None
    if cursor is not None:
        try:
            at, _, last = decode_cursor(cursor).partition("|")
            before = (datetime.fromisoformat(at), uuid.UUID(last))
        except (CursorError, ValueError):
            raise ValidationFailed(
                "Invalid cursor.", errors=[("query.cursor", "is not a cursor returned by this API")]
            ) from None
    rows = await repo.page(
        session, access.project.id, environment=environment, limit=limit + 1, before=before
    )
    shown = rows[:limit]
    next_cursor = (
        encode_cursor(f"{shown[-1].created_at.isoformat()}|{shown[-1].id}") if len(rows) > limit else None
    )
    return Page[DeploymentOut](data=[_out(d) for d in shown], next_cursor=next_cursor)


@router.get(
    "/deployments/{deployment_id}",
    summary="A deployment",
    response_model=DeploymentOut,
    responses=problem_responses(401, 404, 422),
)
async def get_deployment(
    access: Annotated[DeploymentAccess, Depends(DeploymentPermit(Action.READ))],
) -> DeploymentOut:
    return _out(access.deployment)


async def _review(
    access: DeploymentAccess,
    user: CurrentUser,
    body: ReviewIn,
    session: SessionDep,
    backbone: BackboneDep,
    decision: str,
) -> ReviewAccepted:
    try:
        recorded = await deployment_commands.request_review(
            session,
            backbone.topics,
            access.deployment.id,
            user_id=user.id,
            reviewer=user.email,
            decision=decision,
            comment=body.comment,
            correlation_id=current_request_id(),
        )
    except LookupError:
        raise NotFound(f"No deployment {access.deployment.id}.") from None
    except StateConflictError as exc:
        raise Conflict(str(exc)) from None
    except deployment_commands.ReviewForbiddenError as exc:
        raise Forbidden(str(exc)) from None
    await audit.record(
        session,
        action=audit.DEPLOYMENT_APPROVED if decision == "approved" else audit.DEPLOYMENT_REJECTED,
        actor_id=user.id,
        target_type="deployment",
        target_id=recorded.deployment_id,
        project_id=access.deployment.project_id,
        details={"comment": body.comment, "run_id": str(recorded.run_id)},
    )
    await session.commit()
    backbone.wake_relay()
    return ReviewAccepted(
        deployment_id=recorded.deployment_id,
        run_id=recorded.run_id,
        decision=recorded.decision,
        event_id=recorded.event_id,
    )


_REVIEW_DOC = (
    "Recorded at once (202) in the run's history; the orchestrator applies it. Maintainer or above. "
    "403 for the person who triggered the run when the environment forbids self-approval; 409 when "
    "the deployment is not waiting for this review (already approved by you, has all its approvals, "
    "or finished)."
)


@router.post(
    "/deployments/{deployment_id}/approve",
    summary="Approve a deployment waiting for approvals",
    description=_REVIEW_DOC + " Once it has all its approvals (and its wait timer passed) it deploys "
    "when its environment is free.",
    status_code=202,
    response_model=ReviewAccepted,
    responses=problem_responses(401, 403, 404, 409, 413, 415, 422),
)
async def approve_deployment(
    access: Annotated[DeploymentAccess, Depends(DeploymentPermit(Action.APPROVE_DEPLOYS))],
    user: CurrentUser,
    session: SessionDep,
    backbone: BackboneDep,
    body: ReviewIn | None = None,
) -> ReviewAccepted:
    return await _review(access, user, body or ReviewIn(), session, backbone, "approved")


@router.post(
    "/deployments/{deployment_id}/reject",
    summary="Reject a waiting deployment",
    description=_REVIEW_DOC + " A rejection fails the deploying stage with the reviewer and the comment.",
    status_code=202,
    response_model=ReviewAccepted,
    responses=problem_responses(401, 403, 404, 409, 413, 415, 422),
)
async def reject_deployment(
    access: Annotated[DeploymentAccess, Depends(DeploymentPermit(Action.APPROVE_DEPLOYS))],
    user: CurrentUser,
    session: SessionDep,
    backbone: BackboneDep,
    body: ReviewIn | None = None,
) -> ReviewAccepted:
    return await _review(access, user, body or ReviewIn(), session, backbone, "rejected")


@router.post(
    "/projects/{project_id}/environments/{name}/rollback",
    summary="Roll an environment back to an earlier successful deployment",
    description="Starts a run (trigger `rollback`) that re-runs only that deployment's stage at its "
    "commit (not the whole pipeline), recorded as a deployment with `rollback_of`, under the "
    "environment's rules (branches, approvals, wait timer, one at a time). 409 for a deployment that "
    "did not succeed; 404 for one of another project or environment. Send an `Idempotency-Key` to "
    "make retries safe.",
    status_code=202,
    response_model=RollbackAccepted,
    responses=problem_responses(401, 403, 404, 409, 413, 415, 422),
)
async def rollback_environment(
    access: Annotated[ProjectAccess, project_permit(Action.APPROVE_DEPLOYS)],
    user: CurrentUser,
    session: SessionDep,
    backbone: BackboneDep,
    name: EnvironmentName,
    body: RollbackIn,
    idempotent: Idempotent,
) -> RollbackAccepted:
    _checked_name(name)
    try:
        run, target = await deployment_commands.request_rollback(
            session,
            backbone.topics,
            access.project.id,
            name,
            body.deployment_id,
            user_id=user.id,
            correlation_id=current_request_id(),
        )
    except deployment_commands.RollbackRefusedError as exc:
        message = str(exc)
        if message.startswith("No deployment") or " deployed to " in message:
            raise NotFound(message) from None
        raise Conflict(message) from None
    await audit.record(
        session,
        action=audit.DEPLOYMENT_ROLLBACK,
        actor_id=user.id,
        target_type="deployment",
        target_id=target.id,
        project_id=access.project.id,
        details={"environment": name, "run_id": str(run.id), "sha": target.sha},
    )
    url = f"{API_PREFIX}/runs/{run.id}"
    accepted = RollbackAccepted(
        run_id=run.id,
        number=run.number,
        rollback_of=target.id,
        environment=name,
        stage=target.stage,
        sha=target.sha or "",
        ref=target.ref,
        url=url,
    )
    await idempotent.commit(accepted, location=url)
    backbone.wake_relay()
    return accepted
