"""Project secrets: stored encrypted (AES-GCM, bound to project and name), readable in plaintext
only by workers, which inject them into a stage's environment and mask them in its log."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import func

from db.crypto import SecretBox
from db.models import ProjectSecret


def _context(project_id: uuid.UUID, name: str) -> bytes:
    # Binds a ciphertext to its row: it cannot be copied to another project or name.
    return f"project-secret:{project_id}:{name}".encode()


async def put_secret(
    session: AsyncSession, box: SecretBox, project_id: uuid.UUID, name: str, value: str
) -> None:
    ciphertext = box.encrypt(value.encode(), context=_context(project_id, name))
    stmt = insert(ProjectSecret).values(project_id=project_id, name=name, ciphertext=ciphertext)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[ProjectSecret.project_id, ProjectSecret.name],
            set_={"ciphertext": ciphertext, "updated_at": func.now()},
        )
    )


async def secret_names(session: AsyncSession, project_id: uuid.UUID) -> list[str]:
    rows = await session.scalars(
        select(ProjectSecret.name).where(ProjectSecret.project_id == project_id).order_by(ProjectSecret.name)
    )
    return list(rows.all())


async def delete_secret(session: AsyncSession, project_id: uuid.UUID, name: str) -> bool:
    result = await session.execute(
        delete(ProjectSecret).where(ProjectSecret.project_id == project_id, ProjectSecret.name == name)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def decrypted_secrets(session: AsyncSession, box: SecretBox, project_id: uuid.UUID) -> dict[str, str]:
    """One project's secrets in plaintext."""
    return decrypt_secrets(box, project_id, (await encrypted_secrets_of(session, [project_id]))[project_id])


async def encrypted_secrets_of(
    session: AsyncSession, project_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, dict[str, bytes]]:
    """The ciphertexts of these projects' secrets in one query: every project asked for is a key
    (with no secrets, an empty dict). Decrypt each with `decrypt_secrets`."""
    found: dict[uuid.UUID, dict[str, bytes]] = {project_id: {} for project_id in project_ids}
    if not found:
        return found
    rows = await session.execute(
        select(ProjectSecret.project_id, ProjectSecret.name, ProjectSecret.ciphertext).where(
            ProjectSecret.project_id.in_(list(found))
        )
    )
    for r in rows:
        found[r.project_id][r.name] = r.ciphertext
    return found


def decrypt_secrets(box: SecretBox, project_id: uuid.UUID, encrypted: Mapping[str, bytes]) -> dict[str, str]:
    return {
        name: box.decrypt(ciphertext, context=_context(project_id, name)).decode("utf-8", "replace")
        for name, ciphertext in encrypted.items()
    }
