"""The connection pool hands out no dead connection, without a round trip per checkout: one the
server closed is replaced at once, one idle for long is pinged first."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from config.settings import OrchestratorSettings
from db.engine import make_engine, make_sessionmaker

pytestmark = pytest.mark.integration


async def test_a_connection_the_server_closed_is_replaced_on_the_next_checkout(database_url: str) -> None:
    engine = make_engine(OrchestratorSettings(database_url=database_url), application_name="comet-pool-test")
    killer = make_engine(OrchestratorSettings(database_url=database_url))
    sessions = make_sessionmaker(engine)
    try:
        async with sessions() as session:
            first = await session.scalar(text("SELECT pg_backend_pid()"))
        async with killer.begin() as connection:
            await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        await asyncio.sleep(0.1)  # well under the idle-ping threshold: only the closed check can save it
        async with sessions() as session:
            second = await session.scalar(text("SELECT pg_backend_pid()"))
    finally:
        await engine.dispose()
        await killer.dispose()
    assert second != first
