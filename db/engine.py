"""The async engine and session factory, built from settings, with the pool sized there."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from config.settings import CommonSettings


def make_engine(settings: CommonSettings, *, application_name: str = "comet") -> AsyncEngine:
    return create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={
            "server_settings": {"application_name": application_name},
            "command_timeout": 60,
        },
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def asyncpg_dsn(database_url: str) -> str:
    """The plain `postgresql://` DSN asyncpg itself takes (for LISTEN connections)."""
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
