"""Postgres LISTEN, kept alive: a connection that listens on one or more channels, reconnecting
after any failure, for as long as the caller's task runs (cancel the task to stop)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import asyncpg
import structlog

log = structlog.get_logger(__name__)


async def listen_forever(
    dsn: str,
    channel: str | dict[str, Callable[[str], None]],
    on_payload: Callable[[str], None] = lambda _payload: None,
    *,
    on_connect: Callable[[], None] = lambda: None,
    keep_going: Callable[[], bool] = lambda: True,
    retry_s: float = 1.0,
) -> None:
    """Call `on_payload(payload)` for every notification on `channel` (or, given a dict of channels
    and callbacks, each channel's callback on one connection); `on_connect()` after each
    (re)connect, since notifications sent while disconnected are lost."""
    channels = channel if isinstance(channel, dict) else {channel: on_payload}
    while keep_going():
        conn: asyncpg.Connection | None = None
        try:
            conn = await asyncpg.connect(dsn)
            for name, callback in channels.items():
                await conn.add_listener(name, _deliver(callback))
            on_connect()
            while not conn.is_closed() and keep_going():
                await asyncio.sleep(retry_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("listener reconnecting", channels=sorted(channels), error=repr(exc))
            await asyncio.sleep(retry_s)
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 2)


def _deliver(callback: Callable[[str], None]) -> Callable[[object, object, object, object], None]:
    return lambda _conn, _pid, _channel, payload: callback(str(payload))
