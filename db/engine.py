"""The async engine and session factory, built from settings, with the pool sized there.

Connections are checked without a round trip where that suffices: on checkout, one the server
closed (a Postgres restart or shutdown closes every session's socket, and asyncpg notices at once)
is replaced; only one unused for more than `PING_IDLE_S` (which could sit behind a dead network) is
pinged. SQLAlchemy's `pool_pre_ping` pings on every checkout — a round trip on every transaction of
every hop. The pool hands out the most recently used connection first, so busy processes keep
their connections warm and the idle ones age out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session

from config.settings import CommonSettings

PING_IDLE_S = 1.0
_RETURNED = "comet_returned_at"


def make_engine(settings: CommonSettings, *, application_name: str = "comet") -> AsyncEngine:
    engine = create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_recycle=1800,
        pool_use_lifo=True,
        connect_args={
            "server_settings": {"application_name": application_name},
            "command_timeout": 60,
        },
    )
    event.listen(engine.sync_engine, "checkin", _returned)
    event.listen(engine.sync_engine, "checkout", _ping_if_idle)
    return engine


def _returned(dbapi_connection: Any, record: Any) -> None:
    record.info[_RETURNED] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    driver = getattr(dbapi_connection, "_connection", None)  # asyncpg's Connection
    if driver is not None and driver.is_closed():
        raise exc.DisconnectionError("the server closed this connection")
    returned = record.info.get(_RETURNED)
    if returned is None or time.monotonic() - returned < PING_IDLE_S:
        return
    try:
        dbapi_connection.ping()
    except Exception as error:
        # The pool discards this connection and checks out another (a fresh one if need be).
        raise exc.DisconnectionError(f"idle connection is gone: {error!r}") from error


def make_sessionmaker(
    engine: AsyncEngine,
    *,
    after_commit: Callable[[Session], None] | None = None,
    after_rollback: Callable[[Session], None] | None = None,
    info: dict[str, Any] | None = None,
) -> async_sessionmaker[AsyncSession]:
    """Sessions of `engine`; with hooks, called after each commit / rollback of one of them (on a
    session class of their own, so other sessionmakers in the process are not affected); `info`
    starts each session's `info`."""
    if after_commit is None and after_rollback is None:
        return async_sessionmaker(engine, expire_on_commit=False, autoflush=False, info=info)
    session_class = type("HookedSession", (Session,), {})
    if after_commit is not None:
        event.listen(session_class, "after_commit", after_commit)
    if after_rollback is not None:
        event.listen(session_class, "after_rollback", after_rollback)
    return async_sessionmaker(
        engine, expire_on_commit=False, autoflush=False, sync_session_class=session_class, info=info
    )


def asyncpg_dsn(database_url: str) -> str:
    """The plain `postgresql://` DSN asyncpg itself takes (for LISTEN connections)."""
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
