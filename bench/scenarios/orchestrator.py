"""One orchestrator, input preloaded: stage transitions/s while planning a backlog of runs

Runs of the 4+1 pipeline are inserted with `create_run` while no orchestrator runs; the API's
outbox relay publishes their `run.requested` events, so they sit in Kafka (the API is stopped
once they are published). Then ONE `comet orchestrator` starts and plans them all: each run goes
requested→queued and gets its 5 stages (4 queued, the fan-in pending), and the 4 first attempts
are dispatched. No worker runs.

Transitions are the `run.status_changed` + `stage.status_changed` outbox rows written for those
runs. The window starts when the broker reports the orchestrator's consumer group `Stable` (its
consumer holds the partitions and starts fetching) and ends when the bench sees every run planned
(polled every 5 ms), so the process start-up and the Kafka group join are outside it; they are
reported apart.
"""

from __future__ import annotations

import asyncio
import time

from bench.machine import CpuLedger, describe_cpu
from bench.platform import bench_platform, describe_problems
from bench.scenarios import BenchContext
from bench.scenarios._runs import FAN_IN, wait_planned
from bench.stats import Aim, Figure

FULL_RUNS = 300
QUICK_RUNS = 100
TRANSITIONS = ("run.status_changed", "stage.status_changed")

_UNPUBLISHED = """
SELECT count(*) FROM outbox
 WHERE run_id = ANY($1::uuid[]) AND event_type = 'run.requested' AND published_at IS NULL
"""
_OUTBOX = """
SELECT event_type, count(*) AS n, extract(epoch FROM min(created_at)) AS first,
       count(DISTINCT created_at) AS transactions
  FROM outbox
 WHERE run_id = ANY($1::uuid[]) AND event_type <> 'run.requested'
 GROUP BY event_type
"""


async def run(ctx: BenchContext) -> list[Figure]:
    runs = QUICK_RUNS if ctx.quick else FULL_RUNS
    async with bench_platform(ctx.settings, {"fan-in": FAN_IN}, progress=ctx.progress) as p:
        api = await p.start_api()
        ctx.progress(f"orchestrator: preloading {runs} runs (create_run), relayed to Kafka by the api")
        ids = await p.create_runs("fan-in", runs)
        deadline = time.monotonic() + 60
        while await p.fetchval(_UNPUBLISHED, ids):
            if time.monotonic() > deadline:
                raise TimeoutError("the api's relay did not publish the preloaded run.requested events")
            p.check_alive()
            await asyncio.sleep(0.01)
        await api.stop()
        ctx.progress("orchestrator: starting one orchestrator")
        started = time.time()
        orchestrator = p.start_orchestrator()
        ready = await p.wait_group_stable(p.topics.orchestrator_group)
        ledger = CpuLedger({"orchestrator": orchestrator.pid})
        await wait_planned(p, ids, timeout_s=120.0, poll_s=0.005)
        done = time.time()
        spent = ledger.spent()
        rows = {r["event_type"]: r for r in await p.fetch(_OUTBOX, ids)}
        problems = p.problems()
    transitions = sum(int(rows[t]["n"]) for t in TRANSITIONS if t in rows)
    if not transitions:
        raise RuntimeError("no status transitions were recorded")
    first = min(float(rows[t]["first"]) for t in TRANSITIONS if t in rows)
    window = done - ready
    transactions = max(int(r["transactions"]) for r in rows.values())
    per_type = ", ".join(f"{t} {int(r['n'])}" for t, r in sorted(rows.items()))
    ctx.note(
        f"{runs} preloaded runs of the 4+1 pipeline; outbox rows written: {per_type}; "
        f"in about {transactions} orchestrator transactions (distinct now() values)"
    )
    ctx.note(
        f"window: orchestrator's consumer group seen Stable (partitions assigned, polled every 10 ms) → "
        f"all runs seen planned (polled every 5 ms) = {window * 1000:.0f} ms, of which "
        f"{(first - ready) * 1000:.0f} ms before the first transition's transaction began (fetch, "
        "mirror clone, reading and planning the definitions); process start → group Stable "
        f"{(ready - started) * 1000:.0f} ms, not in the window"
    )
    ctx.note(describe_cpu(spent, transitions, "transition"))
    for line in describe_problems(problems):
        ctx.note(line)
    postgres = ctx.references.postgres.rate
    return [
        Figure("stage transitions/s, one orchestrator", transitions / window, "/s")
        .relative_to(postgres)
        .aiming(Aim.at_least(1000)),
        Figure("runs planned/s, one orchestrator", runs / window, "/s").relative_to(postgres),
    ]
