"""The shared Kafka broker, stopped and started again by a fault scenario with `scripts/kafka.sh`.

    async with broker_outage() as broker:
        stopped_at = await broker.stop()
        ready_at = await broker.start()

`stop()` and `start()` run the script without blocking the event loop (the load goes on meanwhile)
and return the wall-clock time it finished: the broker gone, or answering a metadata request.
Whatever happens inside the block (an error, Ctrl-C, a cancelled task), a broker it stopped is
started again on the way out, synchronously, so that a second cancellation cannot interrupt it.
The script runs in a session of its own, so the broker it starts never gets the bench's Ctrl-C.
`log_size()` and `read_log()` read what the broker logs (its group coordinator's decisions).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from bench.machine import kafka_broker_pids

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "kafka.sh"
# Where scripts/kafka.sh has the broker write its log ($COMET_HOME, as in scripts/lib.sh).
LOG = Path(os.environ.get("COMET_HOME") or ROOT / ".comet") / "kafka" / "logs" / "server.log"
STOP_TIMEOUT_S = 60.0
START_TIMEOUT_S = 180.0


class BrokerError(Exception):
    """The broker could not be stopped or started with scripts/kafka.sh."""


@dataclass
class Broker:
    """Stops and starts the broker; `down` while it may be stopped by us."""

    script: Path = SCRIPT
    brokers: Callable[[], list[int]] = kafka_broker_pids  # pids of the brokers on this machine
    down: bool = False
    _running: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def _spawn(self, action: str, out: IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [str(self.script), action],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    async def _run(self, action: str, timeout_s: float) -> float:
        with tempfile.TemporaryFile() as out:
            self._running = popen = self._spawn(action, out)
            deadline = time.monotonic() + timeout_s
            while popen.poll() is None:
                if time.monotonic() > deadline:
                    popen.kill()
                    popen.wait()
                    break
                await asyncio.sleep(0.02)
            finished = time.time()
            self._running = None
            if popen.returncode != 0:
                out.seek(0)
                text = out.read().decode(errors="replace").strip()
                raise BrokerError(
                    f"{self.script.name} {action} exited with {popen.returncode}: {text[-800:]}"
                )
        return finished

    async def stop(self) -> float:
        """Stop the broker (SIGTERM, its controlled shutdown); the time it was gone."""
        self.down = True
        stopped = await self._run("stop", STOP_TIMEOUT_S)
        if pids := self.brokers():
            raise BrokerError(
                f"a Kafka broker still runs after `kafka.sh stop` (pids {pids}): not started by scripts/kafka.sh?"
            )
        return stopped

    async def start(self) -> float:
        """Start the broker; the time it answered a metadata request (what `kafka.sh start` waits for)."""
        ready = await self._run("start", START_TIMEOUT_S)
        self.down = False
        return ready

    def ensure_started(self) -> None:
        """Synchronously: let a script cut short by a cancellation finish, then start the broker if
        we may have left it stopped (`kafka.sh start` does nothing to a running broker)."""
        if self._running is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._running.wait(STOP_TIMEOUT_S)
            self._running = None
        if not self.down:
            return
        result = subprocess.run(
            [str(self.script), "start"],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            timeout=START_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0:
            raise BrokerError(f"could not start Kafka again: {result.stderr.decode(errors='replace')[-800:]}")
        self.down = False


@contextlib.asynccontextmanager
async def broker_outage(
    script: Path = SCRIPT, brokers: Callable[[], list[int]] = kafka_broker_pids
) -> AsyncIterator[Broker]:
    """A `Broker` whose stops are undone on the way out, whatever happened."""
    broker = Broker(script, brokers)
    try:
        yield broker
    finally:
        broker.ensure_started()


def log_size(path: Path = LOG) -> int:
    """How long the broker's log is now (0 when there is none), to read what it adds later."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def read_log(offset: int, path: Path = LOG) -> str | None:
    """The broker's log from `offset` on (all of it if it is now shorter: rotated meanwhile);
    None when it cannot be read."""
    try:
        with path.open("rb") as f:
            f.seek(offset if f.seek(0, os.SEEK_END) >= offset else 0)
            return f.read().decode(errors="replace")
    except OSError:
        return None
