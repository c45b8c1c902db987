"""Transient or not: the one rule every retry loop in Comet follows.

A transient failure is the infrastructure's (Postgres or Kafka unreachable, a timeout, a lost
race): whatever was being done is retried, with backoff, for as long as it takes. Anything else is
a failure of the input itself (a bug meeting an event it cannot handle): retried a bounded number
of times, then set aside (dead letters) so that one bad event never stops the others.
An exception may say for itself with a `retriable` attribute (our own and aiokafka's errors do).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from db.faults import database_transient, exception_chain

log = structlog.get_logger(__name__)
T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    for e in exception_chain(exc):
        retriable = getattr(e, "retriable", None)
        if isinstance(retriable, bool):
            return retriable
    return database_transient(exc)


async def retry_transient(op: Callable[[], Awaitable[T]], *, what: str, max_delay_s: float = 5.0) -> T:
    """`await op()`, retried with backoff while it fails transiently; other failures are raised."""
    delay = 0.2
    while True:
        try:
            return await op()
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning(f"{what} failed; retrying", error=repr(exc), retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay_s)
