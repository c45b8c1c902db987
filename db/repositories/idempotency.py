"""Idempotency records: serialise the requests of one (scope, key), find the live record, store a
new one, and purge expired ones. Functions never commit: a record belongs to the transaction of
the resource it answers for.

Expiry uses the database clock (`now()`), so API hosts with skewed clocks agree. An expired
record of a (scope, key) is deleted when that key is looked up again (so it can be replaced in the
same transaction); other expired rows go in bounded batches each time a record is stored (at most
`PURGE_BATCH`, oldest first, skipping rows another transaction holds): every store removes more
expired rows than it adds, so the table holds about a day's keys without a separate job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import IdempotencyKey
from db.repositories.errors import AlreadyExistsError
from schemas.ids import uuid7

TTL = timedelta(hours=24)
PURGE_BATCH = 100
_UNIQUE = "uq_idempotency_keys_scope_key"

# Seed 11 keeps these locks apart from the concurrency-group locks (seed 7) of the same text.
_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 11))")
_PURGE = text(
    "DELETE FROM idempotency_keys WHERE id IN ("
    " SELECT id FROM idempotency_keys WHERE expires_at <= now()"
    " ORDER BY expires_at LIMIT :batch FOR UPDATE SKIP LOCKED)"
)


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """The first answer to a request, as it is replayed."""

    fingerprint: str
    status_code: int
    body: dict[str, Any]
    headers: Mapping[str, str]


async def lock(session: AsyncSession, scope: str, key: str) -> None:
    """Wait for any other transaction using this (scope, key) to end; held until this one ends.

    Two identical requests racing thus run one after the other: the second finds the first's
    record instead of running its handler (which could fail on the first's new row, say a 409 on
    a project name, where the client must get the first answer)."""
    await session.execute(_LOCK, {"name": f"{scope}\n{key}"})  # a key has no newline


async def find_live(session: AsyncSession, scope: str, key: str) -> StoredAnswer | None:
    """The unexpired record of (scope, key); an expired one is deleted (and may be replaced)."""
    await session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.scope == scope, IdempotencyKey.key == key, IdempotencyKey.expires_at <= func.now()
        )
    )
    row = await session.scalar(
        select(IdempotencyKey).where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
    )
    if row is None:
        return None
    return StoredAnswer(row.fingerprint, row.status_code, row.response_body, row.response_headers)


async def save(session: AsyncSession, scope: str, key: str, answer: StoredAnswer) -> None:
    """Store the answer of (scope, key) for `TTL`, and purge a batch of expired records.

    `AlreadyExistsError` when another transaction stored one first; the caller's transaction is
    then failed and must be rolled back (with whatever it created)."""
    try:
        await session.execute(
            insert(IdempotencyKey).values(
                id=uuid7(),
                scope=scope,
                key=key,
                fingerprint=answer.fingerprint,
                status_code=answer.status_code,
                response_body=answer.body,
                response_headers=dict(answer.headers),
                expires_at=func.now() + TTL,
            )
        )
    except IntegrityError as exc:
        if _UNIQUE in str(exc.orig):
            raise AlreadyExistsError("an answer for this idempotency key") from None
        raise
    await session.execute(_PURGE, {"batch": PURGE_BATCH})
