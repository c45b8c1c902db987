"""Running a long-lived Comet process: uvloop, logging, and a clean stop on SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

import uvloop


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `main(stop)`; the first SIGTERM/SIGINT sets `stop`, a second one exits at once."""

    async def _wrapper() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def _signalled() -> None:
            if stop.is_set():
                raise SystemExit(130)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _signalled)
        await main(stop)

    uvloop.run(_wrapper())
