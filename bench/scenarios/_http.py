"""HTTP load shapes shared by the scenarios that measure the API itself: open-loop (requests sent
on a fixed schedule whether or not earlier ones were answered) and closed-loop (N clients, each
sending its next request when the previous one is answered), and the figures drawn from them.

A request is sent by a `Send` callable given the request's index; it returns the HTTP status.
Every load is bounded in time and in count; an exception counts as status 0 (its text kept).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import httpx

from bench.scenarios._runs import open_loop_offsets
from bench.stats import Summary, summarize

Send = Callable[[int], Awaitable[int]]
HOST = "127.0.0.1"
DRAIN_TIMEOUT_S = 30.0
KEPT_ERRORS = 5


@dataclass(frozen=True, slots=True)
class Sample:
    """One request, on the `time.perf_counter()` clock: when it was due (open loop: its slot in
    the schedule; closed loop: when it was sent), sent and answered; its status (0: it raised)."""

    due: float
    sent: float
    answered: float
    status: int

    @property
    def latency_ms(self) -> float:
        return (self.answered - self.sent) * 1000.0

    @property
    def late_ms(self) -> float:
        """How far behind the schedule the request went out (the load generator's own lag)."""
        return (self.sent - self.due) * 1000.0


@dataclass
class Load:
    """What one load sent and got back."""

    samples: list[Sample] = field(default_factory=list)
    started: int = 0  # requests sent (answered or not)
    skipped: int = 0  # open loop: requests due while `max_in_flight` were unanswered
    unanswered: int = 0  # still unanswered when the drain timed out (cancelled)
    errors: list[str] = field(default_factory=list)  # the first few exceptions' texts
    error_count: int = 0

    def with_status(self, status: int) -> list[Sample]:
        return [s for s in self.samples if s.status == status]

    def statuses(self) -> Counter[int]:
        return Counter(s.status for s in self.samples)

    def other_than(self, status: int) -> int:
        """Requests not answered `status`: other statuses, exceptions, skipped and unanswered."""
        return (
            sum(n for code, n in self.statuses().items() if code != status) + self.skipped + self.unanswered
        )

    def throughput(self, status: int) -> float:
        """Answers with `status` per second, from the first request sent to the last such answer."""
        return throughput(self.samples, status)

    def latency(self, status: int) -> Summary | None:
        ok = [s.latency_ms for s in self.with_status(status)]
        return summarize(ok) if ok else None

    def lateness(self) -> Summary | None:
        return summarize([s.late_ms for s in self.samples]) if self.samples else None

    def describe(self, status: int) -> str:
        """What was sent and how it was answered: `sent 1250, 202: 1250, not 202: 0`."""
        parts = [f"sent {self.started}"]
        parts += [f"{code or 'exception'}: {n}" for code, n in sorted(self.statuses().items())]
        if self.skipped:
            parts.append(f"skipped {self.skipped} (in-flight bound reached)")
        if self.unanswered:
            parts.append(f"unanswered {self.unanswered} after {DRAIN_TIMEOUT_S:.0f} s")
        if self.errors:
            parts.append(f"e.g. {self.errors[0]}")
        parts.append(f"not {status}: {self.other_than(status)}")
        return ", ".join(parts)

    def _failed(self, exc: BaseException) -> None:
        self.error_count += 1
        if len(self.errors) < KEPT_ERRORS:
            self.errors.append(repr(exc)[:300])


def throughput(samples: Sequence[Sample], status: int) -> float:
    """Answers with `status` per second over first sent → last such answer (0 with fewer than 2)."""
    ok = [s for s in samples if s.status == status]
    if len(ok) < 2 or not samples:
        return 0.0
    window = max(s.answered for s in ok) - min(s.sent for s in samples)
    return len(ok) / window if window > 0 else 0.0


class ClientPool:
    """`size` httpx clients of one keep-alive connection each, each lent to one request at a time.

    One `httpx.AsyncClient` with a pool of many connections is no load generator: httpcore 1.0's
    pool re-scans every connection for every queued request (encode/httpcore#1035), so its CPU
    per request grows with connections times requests in flight — on one core, 128 connections
    closed-loop against a server that answers at once manage ~60 requests/s. Clients of one
    connection each keep that cost flat (~1 ms of CPU per request here)."""

    def __init__(
        self, base_url: str, size: int, *, timeout_s: float = 10.0, headers: dict[str, str] | None = None
    ) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self.size = size
        self._all = [
            httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout_s, headers=headers)
            for _ in range(size)
        ]
        self._idle: deque[httpx.AsyncClient] = deque(self._all)
        self._free = asyncio.Semaphore(size)

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[httpx.AsyncClient]:
        """An idle client (waits for one when all are busy), returned to the pool afterwards."""
        async with self._free:
            client = self._idle.popleft()
            try:
                yield client
            finally:
                self._idle.append(client)

    async def touch(self, path: str = "/healthz") -> None:
        """One request on every connection at once: opens them, or re-opens those the server
        closed while idle (uvicorn closes keep-alive connections after 5 s)."""
        await asyncio.gather(*(c.get(path) for c in self._all), return_exceptions=True)

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self._all), return_exceptions=True)


async def _one(load: Load, send: Send, index: int, due: float) -> None:
    load.started += 1
    sent = time.perf_counter()
    try:
        status = await send(index)
    except Exception as exc:  # counted and reported; the load goes on
        load._failed(exc)
        status = 0
    load.samples.append(Sample(due, sent, time.perf_counter(), status))


async def open_loop(
    send: Send, rate_per_s: float, duration_s: float, *, max_in_flight: int, first_index: int = 0
) -> Load:
    """Send request `first_index + i` at `i / rate` seconds from the start, whether or not earlier
    ones were answered. A request due while `max_in_flight` are unanswered is skipped (counted),
    so the load stays bounded if the server stalls; late requests are sent at once (catching up)."""
    load = Load()
    in_flight: set[asyncio.Task[None]] = set()
    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter() + 0.01
    for i, offset in enumerate(open_loop_offsets(rate_per_s, duration_s)):
        due = start + offset
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(in_flight) >= max_in_flight:
            load.skipped += 1
            continue
        task = asyncio.create_task(_one(load, send, first_index + i, due))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        tasks.append(task)
    await _drain(load, tasks)
    return load


async def closed_loop(send: Send, clients: int, duration_s: float, *, max_requests: int) -> Load:
    """`clients` loops, each sending its next request as soon as the previous one is answered,
    until `duration_s` has passed or `max_requests` have been sent in all."""
    if clients < 1 or duration_s <= 0 or max_requests < 1:
        raise ValueError("clients, duration and max_requests must be positive")
    load = Load()
    deadline = time.perf_counter() + duration_s
    counter = iter(range(max_requests))

    async def client() -> None:
        for index in counter:
            if time.perf_counter() >= deadline:
                return
            now = time.perf_counter()
            await _one(load, send, index, now)

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    await _drain(load, tasks)
    return load


async def _drain(load: Load, tasks: Sequence[asyncio.Task[None]]) -> None:
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=DRAIN_TIMEOUT_S)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5)
    load.unanswered = load.started - len(load.samples)


# A server that answers every HTTP/1.1 request at once with `202 {}` (keep-alive), to measure what
# the load generator alone can send. It exits when its stdin closes (the bench is gone).
NULL_SERVER = r"""
import asyncio, sys
RESPONSE = b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    await reader.readexactly(int(line.partition(b":")[2]))
            writer.write(RESPONSE)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
        writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.buffer.read)
    server.close()
try:
    import uvloop
    uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def null_server(*, ready_timeout_s: float = 10.0) -> AsyncIterator[str]:
    """A `NULL_SERVER` subprocess on a free 127.0.0.1 port; yields its base URL."""
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        NULL_SERVER,
        str(port),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            try:
                _, writer = await asyncio.open_connection(HOST, port)
            except OSError:
                if proc.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the null HTTP server did not start (exit {proc.returncode})"
                    ) from None
                await asyncio.sleep(0.02)
                continue
            writer.close()
            break
        yield f"http://{HOST}:{port}"
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            proc.kill()
            await proc.wait()


__all__ = [
    "DRAIN_TIMEOUT_S",
    "ClientPool",
    "Load",
    "Sample",
    "Send",
    "closed_loop",
    "null_server",
    "open_loop",
    "throughput",
]
