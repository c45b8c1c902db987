"""`comet user create`: a user with an Argon2id-hashed password, from the command line."""

from __future__ import annotations

import asyncio
import uuid

from api.auth.passwords import hash_password, password_problems
from config.settings import CommonSettings
from db.engine import make_engine, make_sessionmaker
from db.repositories import users


def create_user(settings: CommonSettings, *, email: str, password: str, admin: bool) -> uuid.UUID:
    from cli.main import CliError

    problems = password_problems(password, email=email)
    if problems:
        raise CliError("password: " + "; ".join(problems))

    async def _create() -> uuid.UUID:
        engine = make_engine(settings, application_name="comet-cli")
        try:
            async with make_sessionmaker(engine).begin() as session:
                user = await users.create_user(
                    session, email=email, password_hash=hash_password(password), is_admin=admin
                )
                return user.id
        finally:
            await engine.dispose()

    try:
        return asyncio.run(_create())
    except users.AlreadyExistsError:
        raise CliError(f"a user with e-mail {email} already exists") from None
