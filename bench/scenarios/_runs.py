"""Helpers shared by the scenarios that drive real Comet processes: the benchmark pipelines,
triggering runs over HTTP (one at a time, as a batch, or open-loop at a fixed rate), and waiting
for runs by polling the database with one query for all of them."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field

from bench.platform import Platform, PlatformError
from bench.stats import percentile

# Each stage's script notes the moment it runs ($EPOCHREALTIME, bash's wall clock, the same clock
# as the bench's time.time()) in the platform's marks file (`@MARKS@`, see `bench.platform`): a
# stage "started" when its script runs, not when a worker claimed it. printf is a bash builtin, so
# the script costs what `true` does.
MARK = 'printf \'%s %s\\n\' "$COMET_RUN_ID" "$EPOCHREALTIME" >> @MARKS@'

ONE_STAGE = f"""\
name: bench-one
stages:
  only:
    run: {MARK}
"""


def fan_in(*, checkout: bool = True) -> str:
    """4 parallel stages and a fan-in, each only noting when its script ran."""
    extra = "" if checkout else "\n    checkout: false"
    stages = "".join(f"  {name}:\n    run: {MARK}{extra}\n" for name in "abcd")
    return f"name: bench-fan-in\nstages:\n{stages}  join:\n    needs: [a, b, c, d]\n    run: {MARK}{extra}\n"


FAN_IN = fan_in()
FAN_IN_NO_CHECKOUT = fan_in(checkout=False)
FAN_IN_STAGES = 5

TERMINAL = ("succeeded", "failed", "cancelled")

_DONE = """
SELECT count(*) FILTER (WHERE status = ANY($2::text[])) FROM runs WHERE id = ANY($1::uuid[])
"""
_STARTED = """
SELECT count(DISTINCT run_id) FROM stage_attempts
 WHERE run_id = ANY($1::uuid[]) AND started_at IS NOT NULL
"""
_PLANNED = "SELECT count(*) FROM runs WHERE id = ANY($1::uuid[]) AND status <> 'requested'"


def open_loop_offsets(rate_per_s: float, duration_s: float) -> list[float]:
    """When (seconds after the start) each trigger of an open-loop load is due: a fixed interval
    of 1/rate, regardless of how long earlier triggers take."""
    if rate_per_s <= 0 or duration_s <= 0:
        raise ValueError("rate and duration must be positive")
    count = round(rate_per_s * duration_s)
    return [i / rate_per_s for i in range(count)]


@dataclass
class Triggered:
    """A run triggered over HTTP: when the request was sent and when its 202 came back (wall clock)."""

    run_id: uuid.UUID
    sent_at: float
    answered_at: float

    @property
    def post_ms(self) -> float:
        return (self.answered_at - self.sent_at) * 1000.0


async def trigger(p: Platform, pipeline: str) -> Triggered:
    run_id, sent = await p.trigger(pipeline)
    return Triggered(run_id, sent, time.time())


async def trigger_batch(p: Platform, pipeline: str, count: int, *, in_flight: int = 8) -> list[Triggered]:
    """`count` runs triggered as fast as `in_flight` concurrent requests allow."""
    gate = asyncio.Semaphore(in_flight)

    async def one() -> Triggered:
        async with gate:
            return await trigger(p, pipeline)

    return list(await asyncio.gather(*(one() for _ in range(count))))


@dataclass
class OpenLoop:
    """What an open-loop load sent: the runs, and the triggers it had to skip or that failed."""

    triggered: list[Triggered] = field(default_factory=list)
    skipped: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def achieved_rate(self) -> float:
        if len(self.triggered) < 2:
            return 0.0
        sent = sorted(t.sent_at for t in self.triggered)
        return (len(sent) - 1) / (sent[-1] - sent[0])


async def open_loop(
    p: Platform,
    pipeline: str,
    rate_per_s: float,
    duration_s: float,
    *,
    max_in_flight: int = 100,
    stop: asyncio.Event | None = None,
) -> OpenLoop:
    """Trigger at fixed intervals whether or not earlier triggers have been answered. A trigger
    due while `max_in_flight` requests are unanswered is skipped (and counted), so the load
    stays bounded if the API stalls. Ends after `duration_s`, or earlier once `stop` is set."""
    result = OpenLoop()
    tasks: list[asyncio.Task[None]] = []
    loop = asyncio.get_running_loop()
    in_flight = 0

    async def one() -> None:
        nonlocal in_flight
        try:
            result.triggered.append(await trigger(p, pipeline))
        except Exception as exc:  # counted and reported; the load goes on
            result.errors.append(repr(exc))
        finally:
            in_flight -= 1

    start = loop.time() + 0.05
    for offset in open_loop_offsets(rate_per_s, duration_s):
        delay = start + offset - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if stop is not None and stop.is_set():
            break
        if in_flight >= max_in_flight:
            result.skipped += 1
            continue
        in_flight += 1
        tasks.append(asyncio.create_task(one()))
    if tasks:
        await asyncio.wait(tasks, timeout=60)
    for task in tasks:
        task.cancel()
    return result


@dataclass
class Stream:
    """An open-loop load running in the background, from `streaming()` until `end()`."""

    task: asyncio.Task[OpenLoop]
    stop: asyncio.Event
    started: float  # wall clock
    ended: float = 0.0

    async def end(self) -> OpenLoop:
        """Stop triggering; what was sent once every request in flight is answered."""
        self.stop.set()
        self.ended = time.time()
        return await self.task


@contextlib.asynccontextmanager
async def streaming(
    p: Platform, pipeline: str, rate_per_s: float, *, cap_s: float = 600.0
) -> AsyncIterator[Stream]:
    """Trigger `pipeline` open-loop at `rate_per_s` in the background (for at most `cap_s`) while
    the block runs; `end()` it to get what was sent. Left without `end()`, it is cancelled."""
    stop = asyncio.Event()
    stream = Stream(
        asyncio.create_task(open_loop(p, pipeline, rate_per_s, cap_s, stop=stop)), stop, time.time()
    )
    try:
        yield stream
    finally:
        if not stream.task.done():
            stop.set()
            stream.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await stream.task


async def _wait(
    p: Platform, query: str, args: Sequence[object], want: int, timeout_s: float, poll_s: float, what: str
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        got = await p.fetchval(query, *args)
        if got >= want:
            return
        if time.monotonic() > deadline:
            raise PlatformError(f"only {got} of {want} runs {what} within {timeout_s:.0f} s")
        p.check_alive()
        await asyncio.sleep(poll_s)


async def wait_finished(
    p: Platform, run_ids: Sequence[uuid.UUID], *, timeout_s: float = 120.0, poll_s: float = 0.01
) -> None:
    await _wait(p, _DONE, [list(run_ids), list(TERMINAL)], len(run_ids), timeout_s, poll_s, "finished")


async def wait_started(
    p: Platform, run_ids: Sequence[uuid.UUID], *, timeout_s: float = 120.0, poll_s: float = 0.01
) -> None:
    await _wait(p, _STARTED, [list(run_ids)], len(run_ids), timeout_s, poll_s, "had a stage started")


async def wait_planned(
    p: Platform, run_ids: Sequence[uuid.UUID], *, timeout_s: float = 120.0, poll_s: float = 0.005
) -> None:
    await _wait(p, _PLANNED, [list(run_ids)], len(run_ids), timeout_s, poll_s, "planned")


_TIMINGS = """
SELECT r.id, r.status,
       extract(epoch FROM r.created_at) AS created,
       extract(epoch FROM min(a.started_at)) AS first_start,
       extract(epoch FROM r.finished_at) AS finished
  FROM runs r LEFT JOIN stage_attempts a ON a.run_id = r.id
 WHERE r.id = ANY($1::uuid[])
 GROUP BY r.id
"""


@dataclass(frozen=True, slots=True)
class RunTimings:
    """A run's database timestamps, as Unix seconds."""

    run_id: uuid.UUID
    status: str
    created: float
    first_start: float | None
    finished: float | None

    @property
    def first_stage_ms(self) -> float | None:
        return None if self.first_start is None else (self.first_start - self.created) * 1000.0

    @property
    def end_to_end_ms(self) -> float | None:
        return None if self.finished is None else (self.finished - self.created) * 1000.0


async def timings(p: Platform, run_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, RunTimings]:
    rows = await p.fetch(_TIMINGS, list(run_ids))
    return {
        row["id"]: RunTimings(
            row["id"],
            row["status"],
            float(row["created"]),
            None if row["first_start"] is None else float(row["first_start"]),
            None if row["finished"] is None else float(row["finished"]),
        )
        for row in rows
    }


_STAGE_COUNTS = """
SELECT count(*) FILTER (WHERE s.status = 'succeeded'
                          AND ($2::float8 IS NULL OR extract(epoch FROM s.finished_at) <= $2)) AS succeeded,
       count(*) AS total,
       extract(epoch FROM min(r.created_at)) AS first_created,
       extract(epoch FROM max(r.finished_at)) AS last_finished
  FROM runs r JOIN stages s ON s.run_id = r.id
 WHERE r.id = ANY($1::uuid[])
"""


@dataclass(frozen=True, slots=True)
class BatchResult:
    succeeded: int
    total: int
    window_s: float

    @property
    def stages_per_s(self) -> float:
        return self.succeeded / self.window_s if self.window_s > 0 else 0.0


async def batch_result(p: Platform, run_ids: Sequence[uuid.UUID], *, cut: float | None = None) -> BatchResult:
    """Stages that succeeded in `run_ids` over first run created → last run finished (DB clock);
    with `cut` (Unix time), only those finished by then, over first run created → `cut`."""
    row = await p.fetchrow(_STAGE_COUNTS, list(run_ids), cut)
    assert row is not None
    end = cut if cut is not None else float(row["last_finished"])
    return BatchResult(int(row["succeeded"]), int(row["total"]), end - float(row["first_created"]))


async def worker_ids(p: Platform) -> dict[int, str]:
    """pid -> worker id of the workers registered in the platform's database."""
    return {int(r["pid"]): str(r["id"]) for r in await p.fetch("SELECT id, pid FROM workers")}


async def warm_up(p: Platform, *, timeout_s: float = 90.0, max_rounds: int = 40) -> int:
    """Trigger rounds of one-stage runs until every live worker has claimed one (so each has
    joined the consumer group, taken partitions and cloned its mirror). Returns the runs used."""
    workers = p.live("worker")
    deadline = time.monotonic() + timeout_s
    used: list[uuid.UUID] = []
    for _ in range(max_rounds):
        batch = await trigger_batch(p, "one", 3 * max(1, len(workers)))
        used += [t.run_id for t in batch]
        await wait_finished(p, [t.run_id for t in batch], timeout_s=max(1.0, deadline - time.monotonic()))
        ids = await worker_ids(p)
        wanted = {ids.get(w.pid) for w in workers}
        claimed = {
            r["worker_id"]
            for r in await p.fetch(
                "SELECT DISTINCT worker_id FROM stage_attempts WHERE run_id = ANY($1::uuid[])", used
            )
        }
        if None not in wanted and wanted <= claimed:
            return len(used)
        if time.monotonic() > deadline:
            break
    raise PlatformError(f"not every worker claimed a warm-up stage within {timeout_s:.0f} s")


_HOPS = """
SELECT r.id,
       extract(epoch FROM r.created_at) AS created,
       (SELECT extract(epoch FROM min(o.published_at)) FROM outbox o
         WHERE o.run_id = r.id AND o.event_type = 'run.requested') AS requested_relayed,
       (SELECT extract(epoch FROM min(o.created_at)) FROM outbox o
         WHERE o.run_id = r.id AND o.event_type = 'run.status_changed') AS planned,
       (SELECT extract(epoch FROM min(o.published_at)) FROM outbox o
         WHERE o.run_id = r.id AND o.event_type = 'attempt.dispatched') AS dispatch_relayed,
       (SELECT extract(epoch FROM min(a.started_at)) FROM stage_attempts a WHERE a.run_id = r.id) AS claimed,
       (SELECT extract(epoch FROM max(a.finished_at)) FROM stage_attempts a JOIN stages s ON s.id = a.stage_id
         WHERE a.run_id = r.id AND s.needs = '{}') AS first_wave_done,
       (SELECT extract(epoch FROM min(a.started_at)) FROM stage_attempts a JOIN stages s ON s.id = a.stage_id
         WHERE a.run_id = r.id AND s.needs <> '{}') AS fan_in_claimed,
       (SELECT extract(epoch FROM max(a.finished_at)) FROM stage_attempts a JOIN stages s ON s.id = a.stage_id
         WHERE a.run_id = r.id AND s.needs <> '{}') AS fan_in_done,
       extract(epoch FROM r.finished_at) AS finished
  FROM runs r
 WHERE r.id = ANY($1::uuid[])
"""

# (column, what happened by then); consecutive columns make one step of the breakdown.
HOPS: tuple[tuple[str, str], ...] = (
    ("created", "API request transaction began (runs.created_at)"),
    ("requested_relayed", "a relay took run.requested (outbox.published_at)"),
    ("planned", "the orchestrator's planning transaction began"),
    ("dispatch_relayed", "a relay took the first attempt.dispatched"),
    ("claimed", "a worker's claim transaction began (first stage start)"),
    ("first_wave_done", "the 4 parallel stages' results were being committed"),
    ("fan_in_claimed", "the fan-in stage was claimed"),
    ("fan_in_done", "the fan-in's result was being committed"),
    ("finished", "the orchestrator finished the run (runs.finished_at)"),
)


def median_steps(rows: Sequence[Mapping[str, float | None]], columns: Sequence[str]) -> list[float | None]:
    """Median (ms) of each step `columns[i] → columns[i+1]` over the rows that have both ends."""
    steps: list[float | None] = []
    for start, end in itertools.pairwise(columns):
        values = sorted(
            (float(e) - float(s)) * 1000.0
            for row in rows
            if (s := row.get(start)) is not None and (e := row.get(end)) is not None
        )
        steps.append(percentile(values, 50) if values else None)
    return steps


async def hop_breakdown(p: Platform, run_ids: Sequence[uuid.UUID]) -> str:
    """Where a run's time goes, step by step (medians over `run_ids`), from database timestamps."""
    rows = [dict(r) for r in await p.fetch(_HOPS, list(run_ids))]
    columns = [c for c, _ in HOPS]
    steps = median_steps(rows, columns)
    parts = [f"{'?' if ms is None else f'{ms:.1f}'} ms → {HOPS[i + 1][1]}" for i, ms in enumerate(steps)]
    return "median steps from " + HOPS[0][1] + ": " + "; ".join(parts)
