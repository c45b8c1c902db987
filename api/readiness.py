"""Readiness: can this API instance do its job? The database answers `SELECT 1` and a Kafka
broker answers a metadata request. Results are cached for a second, and concurrent probes share
one check, so a busy load balancer cannot turn `/readyz` into load on Postgres or Kafka."""

from __future__ import annotations

import asyncio
import time

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from events.probe import kafka_answers

log = structlog.get_logger(__name__)

OK = "ok"
DOWN = "unavailable"


class Readiness:
    def __init__(
        self,
        engine: AsyncEngine,
        bootstrap_servers: str,
        *,
        cache_s: float = 1.0,
        timeout_s: float = 2.0,
    ) -> None:
        self._engine = engine
        self._bootstrap = bootstrap_servers
        self._cache_s = cache_s
        self._timeout_s = timeout_s
        self._lock = asyncio.Lock()
        self._checked_at = float("-inf")
        self._result: dict[str, str] = {}

    async def check(self) -> dict[str, str]:
        """`{"database": "ok"|"unavailable", "kafka": …}`, at most `cache_s` old."""
        async with self._lock:
            if time.monotonic() - self._checked_at >= self._cache_s:
                database, kafka = await asyncio.gather(self._database(), self._kafka())
                self._result = {"database": database, "kafka": kafka}
                self._checked_at = time.monotonic()
            return dict(self._result)

    async def _database(self) -> str:
        try:
            async with asyncio.timeout(self._timeout_s), self._engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception as exc:
            log.warning("readiness: database check failed", error=repr(exc))
            return DOWN
        return OK

    async def _kafka(self) -> str:
        if await kafka_answers(self._bootstrap, timeout_s=self._timeout_s):
            return OK
        log.warning("readiness: kafka check failed", bootstrap_servers=self._bootstrap)
        return DOWN
