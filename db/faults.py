"""Which database failures are the infrastructure's, not the caller's: Postgres unreachable,
restarting or out of connections, or a transaction that lost a race (serialization failure,
deadlock). They are retried, never counted against the input that was being handled."""

from __future__ import annotations

import asyncpg
from sqlalchemy import exc as sa_exc

# SQLSTATE classes and codes that say "try again": connection exceptions (08), insufficient
# resources (53), operator intervention (57P: shutdown, crash, cannot connect now), serialization
# failure and deadlock (40001, 40P01), lock not available (55P03), statement timeout (57014).
_RETRY_CLASSES = ("08", "53", "57P")
_RETRY_CODES = frozenset({"40001", "40P01", "55P03", "57014"})
_FILE_ERRORS = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)


def exception_chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means Postgres cannot be reached (down, restarting, pool exhausted)."""
    for e in exception_chain(exc):
        if isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, _FILE_ERRORS):
            continue  # a local file problem, not the network
        if isinstance(
            e,
            OSError
            | sa_exc.OperationalError
            | sa_exc.InterfaceError
            | sa_exc.TimeoutError
            | asyncpg.exceptions.PostgresConnectionError
            | asyncpg.exceptions.OperatorInterventionError
            | asyncpg.exceptions.InterfaceError,
        ):
            return True
        code = getattr(e, "sqlstate", None)
        if isinstance(code, str) and code.startswith(_RETRY_CLASSES):
            return True
    return False


def database_transient(exc: BaseException) -> bool:
    """`database_unavailable`, or a transaction that lost a race and will work when run again."""
    if database_unavailable(exc):
        return True
    return any(getattr(e, "sqlstate", None) in _RETRY_CODES for e in exception_chain(exc))
