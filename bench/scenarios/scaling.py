"""Elasticity: a new worker's start → its first claimed stage, and the stall while workers join and leave under load

One platform (1 orchestrator, 1 worker of concurrency 4, one-stage `true` runs without checkout):

1. **Joining.** Several times, one run is queued in a pool of its own that no worker serves, then
   a worker of that pool is started: the time from the worker's process start (the bench's clock
   just before the fork) to its first claimed stage (`stage_attempts.started_at`, the claim's
   transaction; same machine, same clock). It is what a freshly scaled-out pod costs before it
   takes work: interpreter start and imports, connecting to Postgres and Kafka, registration, and
   the first sweep of the queue (the claim does not wait for the consumer group's rebalance).
2. **Rebalance stall.** Under a steady open-loop stream of runs, extra workers join one after the
   other and then leave by SIGTERM (they drain), and an extra orchestrator joins and leaves: each
   change makes a consumer group rebalance. The stall of a change is the longest stretch without
   any stage start in the few seconds after it, printed beside the typical gap between starts at
   that rate (what the stream costs anyway). Every run triggered must succeed with one attempt.
"""

from __future__ import annotations

import asyncio
import time

from bench.platform import Platform, bench_platform
from bench.scenarios import BenchContext
from bench.scenarios._runs import streaming, wait_finished
from bench.scenarios._scaling import Change, percentile, stalls_after, typical_gap_ms
from bench.stats import Aim, Figure

ONE = 'name: bench-scaling\nstages:\n  only:\n    checkout: false\n    run: "true"\n'
JOINS_QUICK, JOINS_FULL = 3, 6
RATE_PER_S = 8.0
STEP_S = 3.0  # between membership changes
STALL_WINDOW_S = 3.0
AIM_JOIN_MS = 5000.0
AIM_STALL_MS = 1000.0


def _joining(n: int) -> str:
    return f'name: join{n}\nstages:\n  only:\n    pool: join{n}\n    checkout: false\n    run: "true"\n'


async def _first_claim(p: Platform, pool: str, timeout_s: float = 60.0) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        started = await p.fetchval(
            "SELECT extract(epoch FROM min(started_at)) FROM stage_attempts WHERE pool = $1", pool
        )
        if started is not None:
            return float(started)
        p.check_alive()
        await asyncio.sleep(0.01)
    raise TimeoutError(f"no stage of pool {pool} claimed within {timeout_s:.0f} s")


async def _joins(ctx: BenchContext, p: Platform, count: int) -> list[float]:
    """Milliseconds from each new worker's process start to its first claimed stage."""
    joins: list[float] = []
    for n in range(count):
        await p.create_runs(f"join{n}", 1)
        await asyncio.sleep(0.5)  # planned and queued: nobody serves the pool yet
        began = time.time()
        worker = p.start_worker(concurrency=1, pool=f"join{n}")
        claimed = await _first_claim(p, f"join{n}")
        joins.append((claimed - began) * 1000.0)
        ctx.progress(f"scaling: worker {n + 1} of {count} joined, first claim after {joins[-1]:.0f} ms")
        await worker.stop()
    return joins


async def _churn(ctx: BenchContext, p: Platform) -> tuple[list[float], float, int]:
    """Stalls (ms) after each change while workers and an orchestrator join and leave under load;
    the typical gap between stage starts (ms); the runs triggered."""
    changes: list[Change] = []
    async with streaming(p, "one", RATE_PER_S) as stream:
        extra = []
        for i in range(2):
            await asyncio.sleep(STEP_S)
            extra.append(p.start_worker(concurrency=4))
            changes.append(Change(time.time(), f"worker {i + 2} joined"))
        await asyncio.sleep(STEP_S)
        orchestrator = p.start_orchestrator()
        changes.append(Change(time.time(), "orchestrator 2 joined"))
        for i, worker in enumerate(reversed(extra)):
            await asyncio.sleep(STEP_S)
            changes.append(Change(time.time(), f"worker {3 - i} left"))
            await worker.stop()
        await asyncio.sleep(STEP_S)
        changes.append(Change(time.time(), "orchestrator 2 left"))
        await orchestrator.stop()
        await asyncio.sleep(STEP_S)
        sent = await stream.end()
    run_ids = [t.run_id for t in sent.triggered]
    await wait_finished(p, run_ids, timeout_s=120)
    bad = await p.fetchval(
        "SELECT count(*) FROM runs WHERE id = ANY($1::uuid[]) AND status <> 'succeeded'", run_ids
    )
    repeated = await p.fetchval(
        "SELECT count(*) FROM stage_attempts WHERE run_id = ANY($1::uuid[]) AND number > 1", run_ids
    )
    if bad or repeated or sent.errors:
        raise RuntimeError(
            f"under churn: {bad} run(s) did not succeed, {repeated} stage(s) ran twice, "
            f"{len(sent.errors)} trigger error(s)"
        )
    starts = [
        float(r[0])
        for r in await p.fetch(
            "SELECT extract(epoch FROM started_at) FROM stage_attempts WHERE run_id = ANY($1::uuid[])",
            run_ids,
        )
    ]
    stalls = stalls_after(starts, changes, window_s=STALL_WINDOW_S, end=stream.ended)
    for stall in stalls:
        ctx.progress(f"scaling: {stall.describe()}")
    return [s.gap.ms for s in stalls], typical_gap_ms(starts), len(run_ids)


async def run(ctx: BenchContext) -> list[Figure]:
    joins_wanted = JOINS_QUICK if ctx.quick else JOINS_FULL
    pipelines = {"one": ONE, **{f"join{n}": _joining(n) for n in range(joins_wanted)}}
    async with bench_platform(ctx.settings, pipelines, progress=ctx.progress) as p:
        await p.start_api()
        p.start_orchestrator()
        p.start_worker(concurrency=4)
        warm = await p.create_runs("one", 5)
        await wait_finished(p, warm, timeout_s=120)
        joins = await _joins(ctx, p, joins_wanted)
        stalls, typical_ms, runs = await _churn(ctx, p)
    kafka = ctx.references.kafka.p50
    ctx.note(
        f"joining: {len(joins)} workers started one at a time, each into a pool with one queued stage; "
        "from the process start (fork) to its first claim"
    )
    ctx.note(
        f"churn: {runs} runs at {RATE_PER_S:g}/s while 2 workers joined and left (SIGTERM) and an "
        f"orchestrator joined and left; stall = longest stretch without a stage start within "
        f"{STALL_WINDOW_S:g} s of a change (typical gap between starts {typical_ms:.0f} ms); "
        "every run succeeded with one attempt per stage"
    )
    return [
        Figure("worker start→first claim p50", percentile(joins, 0.5), "ms")
        .relative_to(kafka)
        .aiming(Aim.at_most(AIM_JOIN_MS)),
        Figure("worker start→first claim max", max(joins), "ms").relative_to(kafka),
        Figure("rebalance stall p50", percentile(stalls, 0.5), "ms")
        .relative_to(kafka)
        .aiming(Aim.at_most(AIM_STALL_MS)),
        Figure("rebalance stall max", max(stalls), "ms").relative_to(kafka),
    ]
