"""Webhook intake's lookup: the project a delivery names, and the secrets that may have signed it,
in one round trip (db/repositories/webhooks.intake_target)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.crypto import SecretBox
from db.models import Project, WebhookSecret
from db.repositories.webhooks import intake_target

BOX = SecretBox("s" * 48)


async def _project(session: AsyncSession, repo: str) -> uuid.UUID:
    project = Project(
        name=f"intake-{uuid.uuid4().hex[:10]}",
        repo_url=f"https://github.com/{repo}.git",
        provider="github",
        provider_repo=repo,
    )
    session.add(project)
    await session.flush()
    return project.id


def _secret(project_id: uuid.UUID, value: bytes, expires_at: datetime | None) -> WebhookSecret:
    return WebhookSecret(
        project_id=project_id,
        ciphertext=BOX.encrypt(value, context=project_id.bytes),
        token_sha256=hashlib.sha256(value).hexdigest(),
        expires_at=expires_at,
    )


async def test_the_target_holds_the_current_and_overlapping_secrets_but_not_an_expired_one(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = datetime.now(UTC)
    repo = f"Acme/Widgets-{uuid.uuid4().hex[:8]}"
    async with sessions.begin() as session:
        project_id = await _project(session, repo)
        session.add_all(
            [
                _secret(project_id, b"current", None),
                _secret(project_id, b"previous", now + timedelta(hours=1)),
                _secret(project_id, b"expired", now - timedelta(seconds=1)),
            ]
        )
    async with sessions() as session:
        target = await intake_target(session, BOX, "github", repo.lower(), now)
    assert target is not None
    assert target.id == project_id
    assert sorted(target.keys.hmac_secrets) == [b"current", b"previous"]
    assert sorted(target.keys.token_sha256s) == sorted(
        hashlib.sha256(v).hexdigest() for v in (b"current", b"previous")
    )


async def test_a_project_without_secrets_is_found_with_no_keys(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    repo = f"acme/bare-{uuid.uuid4().hex[:8]}"
    async with sessions.begin() as session:
        project_id = await _project(session, repo)
    async with sessions() as session:
        target = await intake_target(session, BOX, "github", repo.upper(), datetime.now(UTC))
    assert target is not None
    assert target.id == project_id
    assert target.keys.hmac_secrets == []
    assert target.keys.token_sha256s == []


async def test_an_unknown_repository_or_another_host_finds_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    repo = f"acme/elsewhere-{uuid.uuid4().hex[:8]}"
    async with sessions.begin() as session:
        await _project(session, repo)
    async with sessions() as session:
        assert await intake_target(session, BOX, "github", "acme/nobody-has-this", datetime.now(UTC)) is None
        assert await intake_target(session, BOX, "gitlab", repo, datetime.now(UTC)) is None
