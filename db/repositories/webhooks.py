"""Webhook deliveries and the secrets that verify them.

A delivery row is unique per (provider, delivery id): inserting it is the deduplication. The
row keeps the raw body (so a delivery can be shown and re-driven) and a filtered set of headers —
never a header that carries a secret.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import func, or_, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.crypto import SecretBox
from db.models import WebhookDelivery, WebhookSecret
from schemas.ids import uuid7

# Headers worth keeping with a delivery. Signatures are kept (they prove what was verified);
# X-Gitlab-Token is the secret itself and is never stored.
KEPT_HEADERS = frozenset(
    {
        "content-type",
        "user-agent",
        "x-github-event",
        "x-github-delivery",
        "x-github-hook-id",
        "x-hub-signature-256",
        "x-gitlab-event",
        "x-gitlab-event-uuid",
        "x-gitlab-webhook-uuid",
        "idempotency-key",
        "x-event-key",
        "x-request-uuid",
        "x-hook-uuid",
        "x-hub-signature",
    }
)


def kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items() if k.lower() in KEPT_HEADERS}


@dataclass(frozen=True, slots=True)
class VerificationKeys:
    hmac_secrets: list[bytes]
    token_sha256s: list[str]


@dataclass(frozen=True, slots=True)
class IntakeTarget:
    """The project a delivery names, with every secret that may have signed it."""

    id: uuid.UUID
    keys: VerificationKeys


# One round trip for the project and its secrets still valid (the current one and, during a
# rotation's overlap, the previous). Repository names match case-insensitively, as hosts treat
# them (index ix_projects_provider_repo_lower).
_INTAKE_TARGET = text(
    """
    SELECT p.id, s.ciphertext, s.token_sha256
      FROM projects p
      LEFT JOIN webhook_secrets s
        ON s.project_id = p.id AND (s.expires_at IS NULL OR s.expires_at > :now)
     WHERE p.provider = :provider AND lower(p.provider_repo) = lower(:repo)
     ORDER BY p.id
    """
)


async def intake_target(
    session: AsyncSession, box: SecretBox, provider: str, repo: str, now: datetime
) -> IntakeTarget | None:
    """The project whose `provider_repo` is `repo` on `provider`, and its verification keys; None
    when no project is set up for it."""
    rows = (await session.execute(_INTAKE_TARGET, {"provider": provider, "repo": repo, "now": now})).all()
    if not rows:
        return None
    project_id = rows[0].id
    mine = [r for r in rows if r.id == project_id and r.ciphertext is not None]
    return IntakeTarget(
        project_id,
        VerificationKeys(
            [box.decrypt(r.ciphertext, context=project_id.bytes) for r in mine],
            [r.token_sha256 for r in mine],
        ),
    )


async def start_rotation(
    session: AsyncSession, project_id: uuid.UUID, overlap: timedelta, now: datetime
) -> None:
    """Give every current secret an expiry `overlap` from now (the caller adds the new one)."""
    await session.execute(
        update(WebhookSecret)
        .where(WebhookSecret.project_id == project_id)
        .where(or_(WebhookSecret.expires_at.is_(None), WebhookSecret.expires_at > now + overlap))
        .values(expires_at=now + overlap)
    )


_RECORD_DELIVERY = text(
    """
    INSERT INTO webhook_deliveries
           (id, provider, delivery_id, project_id, event, action, outcome, reason, headers, body, redeliveries)
    VALUES (:id, :provider, :delivery_id, :project_id, :event, :action, :outcome, :reason,
            CAST(:headers AS jsonb), :body, 0)
    ON CONFLICT (provider, delivery_id) DO NOTHING
    RETURNING id
    """
)


async def record_delivery(
    session: AsyncSession,
    *,
    provider: str,
    delivery_id: str,
    project_id: uuid.UUID | None,
    event: str,
    action: str | None,
    outcome: str,
    reason: str | None,
    headers: Mapping[str, str],
    body: bytes,
) -> uuid.UUID | None:
    """Insert the delivery; None when (provider, delivery_id) was seen before (a duplicate)."""
    row_id: uuid.UUID | None = (
        await session.execute(
            _RECORD_DELIVERY,
            {
                "id": uuid7(),
                "provider": provider,
                "delivery_id": delivery_id,
                "project_id": project_id,
                "event": event,
                "action": action,
                "outcome": outcome,
                "reason": reason,
                "headers": orjson.dumps(kept_headers(headers)).decode(),
                "body": body,
            },
        )
    ).scalar_one_or_none()
    return row_id


async def existing_delivery(session: AsyncSession, provider: str, delivery_id: str) -> WebhookDelivery | None:
    return (
        await session.scalars(
            select(WebhookDelivery).where(
                WebhookDelivery.provider == provider, WebhookDelivery.delivery_id == delivery_id
            )
        )
    ).first()


async def get_delivery(
    session: AsyncSession, row_id: uuid.UUID, *, for_update: bool = False
) -> WebhookDelivery | None:
    stmt = select(WebhookDelivery).where(WebhookDelivery.id == row_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.scalars(stmt)).first()


async def get_deliveries(
    session: AsyncSession, row_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, WebhookDelivery]:
    """The deliveries of `row_ids` that exist, by id, in one query."""
    if not row_ids:
        return {}
    rows = await session.scalars(select(WebhookDelivery).where(WebhookDelivery.id.in_(set(row_ids))))
    return {d.id: d for d in rows}


async def list_deliveries(
    session: AsyncSession, project_id: uuid.UUID, *, limit: int, before: uuid.UUID | None
) -> list[WebhookDelivery]:
    stmt = select(WebhookDelivery).where(WebhookDelivery.project_id == project_id)
    if before is not None:
        stmt = stmt.where(WebhookDelivery.id < before)
    return list((await session.scalars(stmt.order_by(WebhookDelivery.id.desc()).limit(limit))).all())


async def set_result(
    session: AsyncSession,
    row_id: uuid.UUID,
    *,
    outcome: str | None = None,
    reason: str | None = None,
    run_id: uuid.UUID | None = None,
) -> None:
    values: dict[str, Any] = {}
    if outcome is not None:
        values["outcome"] = outcome
    if reason is not None:
        values["reason"] = reason
    if run_id is not None:
        values["run_id"] = run_id
    if values:
        await session.execute(update(WebhookDelivery).where(WebhookDelivery.id == row_id).values(**values))


_COUNT_REDELIVERY = text("UPDATE webhook_deliveries SET redeliveries = redeliveries + 1 WHERE id = :id")


async def count_redelivery(session: AsyncSession, row_id: uuid.UUID) -> None:
    await session.execute(_COUNT_REDELIVERY, {"id": row_id})


# -- replay (comet replay webhooks, POST …/webhooks/replay) -----------------------------------


@dataclass(frozen=True, slots=True)
class ReplaySelection:
    """Stored deliveries received in [since, until), optionally of one project, host and outcome."""

    since: datetime
    until: datetime | None = None
    project_id: uuid.UUID | None = None
    provider: str | None = None
    outcome: str | None = None


def _selected(selection: ReplaySelection) -> list[Any]:
    where: list[Any] = [WebhookDelivery.received_at >= selection.since]
    if selection.until is not None:
        where.append(WebhookDelivery.received_at < selection.until)
    if selection.project_id is not None:
        where.append(WebhookDelivery.project_id == selection.project_id)
    if selection.provider is not None:
        where.append(WebhookDelivery.provider == selection.provider)
    if selection.outcome is not None:
        where.append(WebhookDelivery.outcome == selection.outcome)
    return where


async def count_selected(session: AsyncSession, selection: ReplaySelection) -> int:
    stmt = select(func.count()).select_from(WebhookDelivery).where(*_selected(selection))
    return int((await session.execute(stmt)).scalar_one())


async def selected_page(
    session: AsyncSession,
    selection: ReplaySelection,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[WebhookDelivery]:
    """The next `limit` selected deliveries in the order they were received (keyset on
    (received_at, id), so a long replay never re-reads or skips a row)."""
    stmt = select(WebhookDelivery).where(*_selected(selection))
    if after is not None:
        stmt = stmt.where(tuple_(WebhookDelivery.received_at, WebhookDelivery.id) > tuple_(*after))
    stmt = stmt.order_by(WebhookDelivery.received_at, WebhookDelivery.id).limit(limit)
    return list((await session.scalars(stmt)).all())


_COUNT_REDELIVERIES = text(
    "UPDATE webhook_deliveries SET redeliveries = redeliveries + 1 WHERE id = ANY(CAST(:ids AS uuid[]))"
)


async def count_redeliveries(session: AsyncSession, row_ids: list[uuid.UUID]) -> None:
    if row_ids:
        await session.execute(_COUNT_REDELIVERIES, {"ids": [str(i) for i in row_ids]})
