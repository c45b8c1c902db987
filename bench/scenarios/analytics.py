"""comet analytics: events/s consumed catching up on a backlog, and its lag behind the live system

One platform (api, orchestrator, 4 workers `--concurrency 4`) on a fresh database and namespace:

1. backlog: runs of the 4+1 pipeline are inserted (`create_run`) and run to their end while
   `comet analytics` is stopped; then it starts. Events/s = the messages on its input topics
   (run-commands, run-status, stage-results; end offsets summed) divided by the time from its
   consumer group seen `Stable` to every run's fact written to `insight_facts` (polled every 20 ms).
2. live: with analytics running, one-stage runs triggered open-loop over HTTP with 4 workers; a
   run's lag is its row's `finished_at` → its run fact's `updated_at` (both on this machine's
   clock): how far the insights trail the live system under load, flush interval included.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.platform import bench_platform, describe_problems
from bench.scenarios import BenchContext
from bench.scenarios._runs import FAN_IN, ONE_STAGE, open_loop, wait_finished
from bench.stats import Aim, Figure, summarize

FULL_BACKLOG, QUICK_BACKLOG = 200, 60
FULL_LOAD_S, QUICK_LOAD_S = 20.0, 8.0
LOAD_RATE = 10.0
WORKERS = 4
FLUSH_S = 0.1

_FACTS = "SELECT count(*) FROM insight_facts WHERE kind = 'run' AND member_id = ANY($1::uuid[])"
_LAG = """
SELECT extract(epoch FROM f.updated_at - r.finished_at) * 1000 AS lag_ms
  FROM runs r JOIN insight_facts f ON f.kind = 'run' AND f.member_id = r.id
 WHERE r.id = ANY($1::uuid[])
"""


async def _messages(bootstrap: str, topics: list[str]) -> int:
    """Messages on `topics` so far (end offsets summed; a fresh namespace starts at 0)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await probe.start()
    try:
        partitions = [
            TopicPartition(d["topic"], part["partition"])
            for d in await admin.describe_topics(topics)
            for part in d["partitions"]
        ]
        return sum((await probe.end_offsets(partitions)).values())
    finally:
        await probe.stop()
        await admin.close()


async def run(ctx: BenchContext) -> list[Figure]:
    backlog = QUICK_BACKLOG if ctx.quick else FULL_BACKLOG
    load_s = QUICK_LOAD_S if ctx.quick else FULL_LOAD_S
    async with bench_platform(ctx.settings, {"fan-in": FAN_IN, "one": ONE_STAGE}, progress=ctx.progress) as p:
        await p.start_api()
        p.start_orchestrator()
        for _ in range(WORKERS):
            p.start_worker()
        ctx.progress(f"analytics: {backlog} runs of the 4+1 pipeline to their end, analytics stopped")
        ids = await p.create_runs("fan-in", backlog)
        await wait_finished(p, ids, timeout_s=300.0, poll_s=0.05)
        inputs = p.topics.analytics_inputs()
        messages = await _messages(ctx.settings.kafka_bootstrap_servers, inputs)

        ctx.progress("analytics: starting comet analytics on the backlog")
        started = time.time()
        analytics = p.start(
            "analytics",
            ["analytics"],
            analytics_flush_interval=FLUSH_S,
            analytics_data_dir=p.root / "analytics",
        )
        stable = await p.wait_group_stable(p.topics.analytics_group, timeout_s=120.0)
        deadline = time.monotonic() + 300
        while await p.fetchval(_FACTS, ids) < backlog:
            if time.monotonic() > deadline:
                raise TimeoutError("analytics did not write every backlog run's fact within 300 s")
            p.check_alive()
            await asyncio.sleep(0.02)
        drained = time.time()

        ctx.progress(
            f"analytics: live load, {LOAD_RATE:.0f} one-stage runs/s for {load_s:.0f} s, {WORKERS} workers"
        )
        load = await open_loop(p, "one", LOAD_RATE, load_s)
        live = [t.run_id for t in load.triggered]
        await wait_finished(p, live, timeout_s=120.0, poll_s=0.05)
        deadline = time.monotonic() + 60
        while await p.fetchval(_FACTS, live) < len(live):
            if time.monotonic() > deadline:
                raise TimeoutError("analytics did not write every live run's fact within 60 s")
            await asyncio.sleep(0.05)
        lags = [float(r["lag_ms"]) for r in await p.fetch(_LAG, live)]
        code = await analytics.stop()
        problems = p.problems()
    window = drained - stable
    ctx.note(
        f"backlog: {backlog} runs of the 4+1 pipeline, {messages} messages on {len(inputs)} input topics; "
        f"group Stable → every run's fact written = {window * 1000:.0f} ms (process start → Stable "
        f"{(stable - started) * 1000:.0f} ms, not in the window); facts flushed every {FLUSH_S * 1000:.0f} ms"
    )
    ctx.note(
        f"live: {len(live)} one-stage runs at {load.achieved_rate:.1f}/s with {WORKERS} workers "
        f"(skipped {load.skipped}, errors {len(load.errors)}); lag = run finished_at → its fact written"
    )
    ctx.note(f"analytics exited {code} on SIGTERM (a drain)")
    for line in describe_problems(problems):
        ctx.note(line)
    stats = summarize(lags)
    kafka = ctx.references.kafka
    return [
        Figure("analytics events/s consumed (backlog)", messages / window, "/s")
        .relative_to(kafka.rate)
        .aiming(Aim.at_least(1000)),
        Figure("analytics lag p50 under load", stats.p50, "ms")
        .relative_to(kafka.p50)
        .aiming(Aim.at_most(1000)),
        Figure("analytics lag p99 under load", stats.p99, "ms").relative_to(kafka.p99),
    ]
