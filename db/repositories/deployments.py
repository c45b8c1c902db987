"""Environments and deployments in the database (decision 0027): the environment's lock and its
line of deployments for the orchestrator shell, the rules snapshot a plan takes, the timers due,
and what the API reads and records (reviews, rollbacks). Rows of `deployments` are written only by
the projection (`db/projection.py`) from the `run.changed` events; here they are read."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Deployment, Environment, Stage
from orchestrator.deployments import Rules
from schemas.deployments import DEPLOYMENT_ACTIVE

_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 27))")


def _key(project_id: uuid.UUID, environment: str) -> str:
    return f"{project_id}/{environment}"


async def lock_environments(session: AsyncSession, environments: Iterable[tuple[uuid.UUID, str]]) -> None:
    """Serialise who deploys to an environment until commit (sorted: no deadlocks)."""
    for key in sorted({_key(p, e) for p, e in environments}):
        await session.execute(_LOCK, {"key": key})


@dataclass(frozen=True, slots=True)
class InLine:
    """A deployment of the environment as the shell weighs whose turn it is."""

    id: uuid.UUID
    run_id: uuid.UUID
    status: str
    ready: bool
    created_at: datetime


async def in_environment(
    session: AsyncSession, project_id: uuid.UUID, environment: str, *, excluding_runs: Sequence[uuid.UUID]
) -> list[InLine]:
    """The environment's active deployments and those ready and waiting for it, of runs other
    than `excluding_runs` (the caller knows those better: its batch has not written them yet)."""
    rows = await session.execute(
        select(
            Deployment.id, Deployment.run_id, Deployment.status, Deployment.ready_at, Deployment.created_at
        )
        .where(
            Deployment.project_id == project_id,
            Deployment.environment == environment,
            or_(
                Deployment.status.in_(sorted(DEPLOYMENT_ACTIVE)),
                and_(Deployment.status == "waiting", Deployment.ready_at.is_not(None)),
            ),
            Deployment.run_id.not_in(list(excluding_runs)) if excluding_runs else text("true"),
        )
        .order_by(Deployment.created_at, Deployment.id)
    )
    return [InLine(r.id, r.run_id, r.status, r.ready_at is not None, r.created_at) for r in rows]


async def rules_for(
    session: AsyncSession, project_id: uuid.UUID, names: Iterable[str], approval_timeout_s: float
) -> dict[str, Rules]:
    """Each named environment's rules (the defaults for one nobody configured), as a plan
    snapshots them into its deploying stages."""
    wanted = sorted(set(names))
    found: dict[str, Rules] = {name: Rules(approval_timeout_s=approval_timeout_s) for name in wanted}
    if not wanted:
        return found
    rows = await session.scalars(
        select(Environment).where(Environment.project_id == project_id, Environment.name.in_(wanted))
    )
    for env in rows:
        found[env.name] = Rules(
            required_approvals=env.required_approvals,
            allow_self_approval=env.allow_self_approval,
            branches=tuple(env.branches),
            wait_timer_s=env.wait_timer_s,
            approval_timeout_s=approval_timeout_s,
        )
    return found


@dataclass(frozen=True, slots=True)
class Due:
    id: uuid.UUID
    run_id: uuid.UUID


async def due_timers(session: AsyncSession, now: datetime, limit: int = 500) -> list[Due]:
    """Waiting deployments whose wait timer ended (not yet ready) or whose approvals are overdue."""
    rows = await session.execute(
        select(Deployment.id, Deployment.run_id)
        .where(
            Deployment.status == "waiting",
            or_(
                and_(Deployment.wait_until <= now, Deployment.ready_at.is_(None)),
                and_(
                    Deployment.expires_at <= now,
                    Deployment.ready_at.is_(None),
                    Deployment.wait_until.is_(None),
                ),
            ),
        )
        .order_by(Deployment.created_at)
        .limit(limit)
    )
    return [Due(r.id, r.run_id) for r in rows]


# -- environments (configuration) ----------------------------------------------------------------
async def get_environment(session: AsyncSession, project_id: uuid.UUID, name: str) -> Environment | None:
    return await session.scalar(
        select(Environment).where(Environment.project_id == project_id, Environment.name == name)
    )


async def put_environment(
    session: AsyncSession,
    project_id: uuid.UUID,
    name: str,
    *,
    required_approvals: int,
    allow_self_approval: bool,
    branches: list[str],
    wait_timer_s: float,
    now: datetime,
) -> tuple[Environment, bool]:
    """Create or replace an environment's rules; (row, created)."""
    env = await get_environment(session, project_id, name)
    created = env is None
    if env is None:
        env = Environment(project_id=project_id, name=name, created_at=now)
        session.add(env)
    env.required_approvals = required_approvals
    env.allow_self_approval = allow_self_approval
    env.branches = list(branches)
    env.wait_timer_s = wait_timer_s
    env.updated_at = now
    await session.flush()
    return env, created


async def environment_names(session: AsyncSession, project_id: uuid.UUID) -> list[str]:
    """Configured environments and those deployed to without configuration, by name."""
    configured = await session.scalars(select(Environment.name).where(Environment.project_id == project_id))
    deployed = await session.scalars(
        select(Deployment.environment).where(Deployment.project_id == project_id).distinct()
    )
    return sorted(set(configured) | set(deployed))


async def environments_of(session: AsyncSession, project_id: uuid.UUID) -> dict[str, Environment]:
    rows = await session.scalars(select(Environment).where(Environment.project_id == project_id))
    return {e.name: e for e in rows}


async def current(session: AsyncSession, project_id: uuid.UUID, environment: str) -> Deployment | None:
    """What the environment runs or runs now: its active deployment, else its latest success."""
    active = await session.scalar(
        select(Deployment)
        .where(
            Deployment.project_id == project_id,
            Deployment.environment == environment,
            Deployment.status.in_(sorted(DEPLOYMENT_ACTIVE)),
        )
        .order_by(Deployment.created_at.desc())
        .limit(1)
    )
    if active is not None:
        return active
    return await session.scalar(
        select(Deployment)
        .where(
            Deployment.project_id == project_id,
            Deployment.environment == environment,
            Deployment.status == "succeeded",
        )
        .order_by(Deployment.finished_at.desc(), Deployment.id.desc())
        .limit(1)
    )


async def waiting_in(session: AsyncSession, project_id: uuid.UUID, environment: str) -> list[Deployment]:
    """The environment's waiting deployments, in line order, each with its reason."""
    rows = await session.scalars(
        select(Deployment)
        .where(
            Deployment.project_id == project_id,
            Deployment.environment == environment,
            Deployment.status == "waiting",
        )
        .order_by(Deployment.created_at, Deployment.id)
    )
    return list(rows)


# -- deployments (reads) -------------------------------------------------------------------------
async def get(session: AsyncSession, deployment_id: uuid.UUID) -> Deployment | None:
    return await session.get(Deployment, deployment_id)


async def page(
    session: AsyncSession,
    project_id: uuid.UUID,
    *,
    environment: str | None,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
) -> list[Deployment]:
    """Newest first; `before` is the (created_at, id) of the last row of the previous page."""
    query = select(Deployment).where(Deployment.project_id == project_id)
    if environment is not None:
        query = query.where(Deployment.environment == environment)
    if before is not None:
        at, last = before
        query = query.where(
            or_(Deployment.created_at < at, and_(Deployment.created_at == at, Deployment.id < last))
        )
    rows = await session.scalars(
        query.order_by(Deployment.created_at.desc(), Deployment.id.desc()).limit(limit)
    )
    return list(rows)


async def stage_status(session: AsyncSession, stage_id: uuid.UUID) -> str | None:
    return await session.scalar(select(Stage.status).where(Stage.id == stage_id))


async def latest_of_stage(session: AsyncSession, run_id: uuid.UUID, stage: str) -> Deployment | None:
    return await session.scalar(
        select(Deployment)
        .where(Deployment.run_id == run_id, Deployment.stage == stage)
        .order_by(Deployment.number.desc())
        .limit(1)
    )
