"""Outbound notification integrations (`webhook`, `slack`) and their deliveries: created with the
target encrypted, queued per notification, claimed when due (a lease, so a slow receiver never
holds a transaction open), and every attempt recorded (docs/decisions/0024)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from db.crypto import SecretBox
from db.models import (
    Deployment,
    Integration,
    NotificationAttempt,
    NotificationDelivery,
    Project,
    Run,
    Stage,
    TestCase,
)
from schemas.ids import uuid7

KINDS = ("webhook", "slack")


@dataclass(frozen=True, slots=True)
class Target:
    """What an integration's ciphertext holds: where to send, and the signing secret (webhook)."""

    url: str
    secret: str | None


def _context(integration_id: uuid.UUID) -> bytes:
    return f"integration:{integration_id}:notification".encode()


def open_target(box: SecretBox, integration_id: uuid.UUID, ciphertext: bytes) -> Target:
    plain = orjson.loads(box.decrypt(ciphertext, context=_context(integration_id)))
    return Target(url=str(plain["url"]), secret=plain.get("secret"))


async def create(
    session: AsyncSession,
    box: SecretBox,
    *,
    project_id: uuid.UUID,
    kind: str,
    url: str,
    shown_url: str,
    events: Sequence[str],
    secret: str | None,
) -> Integration:
    """A new integration (a project may have several of each kind); the URL and secret are
    stored encrypted, `shown_url` (a Slack URL without its token) in the clear config."""
    integration_id = uuid7()
    sealed = box.encrypt(orjson.dumps({"url": url, "secret": secret}), context=_context(integration_id))
    integration = Integration(
        id=integration_id,
        project_id=project_id,
        kind=kind,
        config={"url": shown_url, "events": list(events)},
        secret_ciphertext=sealed,
    )
    session.add(integration)
    await session.flush()
    return integration


async def get(session: AsyncSession, project_id: uuid.UUID, integration_id: uuid.UUID) -> Integration | None:
    return await session.scalar(
        select(Integration).where(Integration.project_id == project_id, Integration.id == integration_id)
    )


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: uuid.UUID
    kind: str
    events: list[str]


async def run_subscribers(
    session: AsyncSession, run_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[Subscriber]]:
    """The enabled notification integrations following each of these runs (those of its project),
    in one query; a run nobody follows is absent."""
    if not run_ids:
        return {}
    rows = await session.execute(
        select(Run.id, Integration)
        .join(Integration, Integration.project_id == Run.project_id)
        .where(Run.id.in_(set(run_ids)), Integration.kind.in_(KINDS), Integration.enabled.is_(True))
    )
    found: dict[uuid.UUID, list[Subscriber]] = {}
    for run_id, i in rows:
        found.setdefault(run_id, []).append(Subscriber(i.id, i.kind, list(i.config.get("events") or [])))
    return found


async def enqueue(session: AsyncSession, deliveries: Sequence[dict[str, Any]]) -> None:
    """Queue deliveries: `{integration_id, project_id, event, source_event_id, body}` each."""
    if deliveries:
        await session.execute(insert(NotificationDelivery), [{"id": uuid7(), **d} for d in deliveries])


# -- sending -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Due:
    id: uuid.UUID
    integration_id: uuid.UUID
    kind: str
    event: str
    body: bytes
    attempts: int
    ciphertext: bytes | None


_CLAIM = text(
    """
    UPDATE notification_deliveries d SET next_attempt_at = now() + make_interval(secs => :lease)
      FROM integrations i
     WHERE d.id IN (
             SELECT id FROM notification_deliveries
              WHERE status = 'pending' AND next_attempt_at <= now()
              ORDER BY next_attempt_at, id LIMIT :limit FOR UPDATE SKIP LOCKED)
       AND i.id = d.integration_id
    RETURNING d.id, d.integration_id, i.kind, d.event, d.body, d.attempts, i.secret_ciphertext
    """
)


async def claim_due(session: AsyncSession, *, limit: int, lease_s: float) -> list[Due]:
    """Due deliveries, leased for `lease_s` (another notifier skips them meanwhile; if this one
    dies mid-send, they are due again when the lease ends)."""
    rows = await session.execute(_CLAIM, {"limit": limit, "lease": lease_s})
    # In the order they were queued (ids are time-ordered): UPDATE … RETURNING keeps no order.
    return sorted((Due(*row) for row in rows.all()), key=lambda d: d.id)


_AFTER_ATTEMPT = text(
    """
    UPDATE notification_deliveries SET
        attempts = attempts + 1, last_http_status = :http_status, last_error = :error,
        status = CASE WHEN :delivered THEN 'delivered'
                      WHEN attempts + 1 >= :max THEN 'failed' ELSE 'pending' END,
        delivered_at = CASE WHEN :delivered THEN now() ELSE NULL END,
        next_attempt_at = now() + make_interval(secs => :delay)
     WHERE id = :id AND status = 'pending'
    """
)


async def record_attempt(
    session: AsyncSession,
    delivery: Due,
    *,
    started_at: datetime,
    duration_ms: int,
    http_status: int | None,
    error: str | None,
    delay_s: float,
    max_attempts: int,
) -> None:
    """Record one attempt and its outcome: delivered (a 2xx), or due again after `delay_s`, or
    failed for good after `max_attempts`."""
    delivered = error is None
    session.add(
        NotificationAttempt(
            delivery_id=delivery.id,
            number=delivery.attempts + 1,
            started_at=started_at,
            duration_ms=duration_ms,
            http_status=http_status,
            error=None if error is None else error[:2000],
        )
    )
    await session.execute(
        _AFTER_ATTEMPT,
        {
            "id": delivery.id,
            "http_status": http_status,
            "error": None if error is None else error[:2000],
            "delivered": delivered,
            "max": max_attempts,
            "delay": delay_s,
        },
    )


# -- listing -------------------------------------------------------------------------------------
async def deliveries_page(
    session: AsyncSession, integration_id: uuid.UUID, *, limit: int, before: uuid.UUID | None
) -> list[tuple[NotificationDelivery, list[NotificationAttempt]]]:
    """Newest first (ids are UUIDv7), each with its attempts in order."""
    query = select(NotificationDelivery).where(NotificationDelivery.integration_id == integration_id)
    if before is not None:
        query = query.where(NotificationDelivery.id < before)
    deliveries = list(
        (await session.scalars(query.order_by(NotificationDelivery.id.desc()).limit(limit))).all()
    )
    attempts: dict[uuid.UUID, list[NotificationAttempt]] = {d.id: [] for d in deliveries}
    if deliveries:
        rows = await session.scalars(
            select(NotificationAttempt)
            .where(NotificationAttempt.delivery_id.in_(list(attempts)))
            .order_by(NotificationAttempt.delivery_id, NotificationAttempt.number)
        )
        for a in rows:
            attempts[a.delivery_id].append(a)
    return [(d, attempts[d.id]) for d in deliveries]


# -- what a notification is about ---------------------------------------------------------------
async def run_with_project(
    session: AsyncSession, run_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[Run, str]]:
    rows = await session.execute(
        select(Run, Project.name).join(Project, Project.id == Run.project_id).where(Run.id.in_(set(run_ids)))
    )
    return {run.id: (run, name) for run, name in rows}


async def stage_of(session: AsyncSession, run_id: uuid.UUID, stage: str) -> tuple[Stage | None, bool]:
    """The run's stage `stage`, and whether it has Deployment rows (decision 0027)."""
    found = await session.scalar(select(Stage).where(Stage.run_id == run_id, Stage.name == stage))
    if found is None:
        return None, False
    deployment = await session.scalar(select(Deployment.id).where(Deployment.stage_id == found.id).limit(1))
    return found, deployment is not None


async def deployment_facts(session: AsyncSession, deployment_id: uuid.UUID) -> tuple[int, datetime | None]:
    """A deployment's required approvals and creation time ((0, None) without its row)."""
    row = (
        await session.execute(
            select(Deployment.required_approvals, Deployment.created_at).where(Deployment.id == deployment_id)
        )
    ).first()
    return (0, None) if row is None else (int(row[0]), row[1])


async def newly_flaky(session: AsyncSession, attempt_id: uuid.UUID) -> list[TestCase]:
    """The attempt's flaky cases whose test was never announced as flaky in its project, now
    recorded as announced (one case per test)."""
    cases = list(
        (
            await session.scalars(
                select(TestCase)
                .where(TestCase.attempt_id == attempt_id, TestCase.flaky.is_(True))
                .order_by(TestCase.id)
            )
        ).all()
    )
    first: dict[str, TestCase] = {}
    for case in cases:
        first.setdefault(case.key, case)
    if not first:
        return []
    some = next(iter(first.values()))
    claimed = await session.execute(
        text(
            "INSERT INTO flaky_notices (project_id, test_key, run_id) "
            "SELECT :project_id, unnest(CAST(:keys AS varchar[])), :run_id "
            "ON CONFLICT DO NOTHING RETURNING test_key"
        ),
        {"project_id": some.project_id, "keys": list(first), "run_id": some.run_id},
    )
    fresh = {row.test_key for row in claimed}
    return [case for key, case in first.items() if key in fresh]
