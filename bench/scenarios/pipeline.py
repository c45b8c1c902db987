"""Whole system over HTTP: trigger→first stage (idle, 50 runs/s), 4+1 pipeline, stages/s, memory

One platform (real `comet api`, `orchestrator` and `worker --concurrency 4` subprocesses on a
fresh database and topic namespace) is started and measured in this order:

1. idle memory: VmRSS of the api, the orchestrator and one worker after a warm-up and a few idle
   seconds;
2. idle latencies: runs of the 4+1 pipeline (4 parallel `true` stages and a fan-in) triggered one
   at a time, each awaited to the end: trigger→first-stage-start and end-to-end;
3. stages/s with 1, then 2, then 4 workers: a batch of 4+1 runs triggered at once, timed from the
   first run's creation to the last run's end (database clock); then 2 workers again with stages
   that say `checkout: false`;
4. trigger→first-stage-start at 50 runs/s: one-stage runs triggered open-loop every 20 ms.

A stage "started" when its script runs: each script appends `$EPOCHREALTIME` (bash's wall clock)
to a marks file, compared with the wall-clock moment the bench sent the trigger. The claim (the
start of the worker's claim transaction) is reported beside it, from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from bench.machine import CpuLedger, by_role, describe_cpu
from bench.platform import (
    CometProcess,
    Platform,
    PlatformError,
    Transactions,
    bench_platform,
    describe_problems,
    rss_mib,
)
from bench.scenarios import BenchContext
from bench.scenarios._runs import (
    FAN_IN,
    FAN_IN_NO_CHECKOUT,
    FAN_IN_STAGES,
    ONE_STAGE,
    BatchResult,
    RunTimings,
    batch_result,
    hop_breakdown,
    open_loop,
    timings,
    trigger,
    trigger_batch,
    wait_finished,
    wait_started,
    warm_up,
)
from bench.stats import Aim, Figure, summarize

IDLE_S = 5.0
# 12 partitions per topic: 1, 2 and 4 workers all get an equal share of the dispatch topic.
PARTITIONS = 12
LOAD_RATE = 50.0
LOAD_WORKERS = 4
# PostgreSQL backends flush their statistics at most once a second while busy (10 s once idle).
STATS_LAG_S = 1.2


def _mb(mib: float) -> float:
    return mib * 1024 * 1024 / 1e6


@dataclass(frozen=True, slots=True)
class Budget:
    """How much to measure: every loop is bounded in count and in time."""

    idle_runs: int
    idle_cap_s: float
    batch_runs: int
    batch_cap_s: float
    load_s: float

    @classmethod
    def of(cls, ctx: BenchContext) -> Budget:
        if ctx.quick:
            return cls(min(ctx.samples, 50), 20.0, 30, 20.0, 4.0)
        return cls(min(ctx.samples, 300), 45.0, 60, 40.0, 10.0)


async def run(ctx: BenchContext) -> list[Figure]:
    budget = Budget.of(ctx)
    figures: list[Figure] = []
    async with bench_platform(
        ctx.settings,
        {"one": ONE_STAGE, "fan-in": FAN_IN, "fan-in-no-checkout": FAN_IN_NO_CHECKOUT},
        progress=ctx.progress,
        kafka_partitions=PARTITIONS,
    ) as p:
        api = await p.start_api()
        orchestrator = p.start_orchestrator()
        worker = p.start_worker()
        ctx.progress("pipeline: warming up (api, orchestrator, 1 worker)")
        await warm_up(p)
        figures += await _memory(ctx, p, [api, orchestrator, worker], "idle")
        figures += await _idle_latencies(ctx, p, budget.idle_runs, budget.idle_cap_s)
        for workers in (1, 2, 4):
            while len(p.live("worker")) < workers:
                p.start_worker()
            if workers > 1:
                ctx.progress(f"pipeline: warming up {workers} workers")
                await warm_up(p)
            figures += await _throughput(ctx, p, workers, budget)
        while len(p.live("worker")) > 2:
            await p.live("worker")[-1].stop()
        figures += await _throughput(ctx, p, 2, budget, checkout=False)
        while len(p.live("worker")) < LOAD_WORKERS:
            p.start_worker()
        await warm_up(p)
        figures += await _loaded_latency(ctx, p, budget.load_s)
        after = rss_mib([api, orchestrator, worker])
        if len(after) == 3:
            ctx.note(
                "after the load (same three processes, measured right after it): "
                + ", ".join(f"{name} {_mb(v):.0f} MB" for name, v in after.items())
                + f"; sum {_mb(sum(after.values())):.0f} MB"
            )
        for line in describe_problems(p.problems()):
            ctx.note(line)
    return figures


async def _memory(ctx: BenchContext, p: Platform, procs: list[CometProcess], when: str) -> list[Figure]:
    ctx.progress(f"pipeline: {IDLE_S:.0f} s idle, then VmRSS")
    await asyncio.sleep(IDLE_S)
    p.check_alive()
    rss = rss_mib(procs)
    figures = [Figure(f"{name} VmRSS ({when})", _mb(v), "MB") for name, v in rss.items()]
    figures.append(
        Figure(f"api+orchestrator+worker VmRSS ({when})", _mb(sum(rss.values())), "MB").aiming(
            Aim.at_most(250)
        )
    )
    ctx.note(
        f"memory: VmRSS from /proc/<pid>/status after a warm-up of a few runs and {IDLE_S:.0f} s idle"
        " (MB = 10^6 bytes)"
    )
    return figures


async def _idle_latencies(ctx: BenchContext, p: Platform, samples: int, cap_s: float) -> list[Figure]:
    ctx.progress(f"pipeline: {samples} sequential 4+1 runs (idle), at most {cap_s:.0f} s")
    kafka = ctx.references.kafka.p50
    triggered = []
    xacts_before = await p.transactions()
    ledger = await _ledger(p)
    deadline = time.monotonic() + cap_s
    for _ in range(samples):
        t = await trigger(p, "fan-in")
        await wait_finished(p, [t.run_id], timeout_s=30.0, poll_s=0.005)
        triggered.append(t)
        if time.monotonic() > deadline:
            break
    if len(triggered) < samples:
        ctx.note(f"idle: time cap of {cap_s:.0f} s reached after {len(triggered)} of {samples} runs")
    spent = await _spent(p, ledger)
    await asyncio.sleep(STATS_LAG_S)
    xacts = await p.transactions() - xacts_before
    by_run = await timings(p, [t.run_id for t in triggered])
    rows = [by_run[t.run_id] for t in triggered]
    _note_failures(ctx, "idle", rows)
    ctx.note("idle: " + await hop_breakdown(p, [t.run_id for t in triggered]))
    ctx.note("idle: " + describe_cpu(spent, len(triggered), "4+1 run"))
    ctx.note("idle: " + _describe_xacts(xacts, len(triggered), "4+1 run"))
    db_first = [ms for r in rows if (ms := r.first_stage_ms) is not None]
    client_first = [
        (r.first_start - t.sent_at) * 1000.0
        for t, r in zip(triggered, rows, strict=True)
        if r.first_start is not None
    ]
    e2e = [ms for r in rows if r.status == "succeeded" and (ms := r.end_to_end_ms) is not None]
    scripts = p.script_starts()
    script_first = [(min(scripts[t.run_id]) - t.sent_at) * 1000.0 for t in triggered if scripts.get(t.run_id)]
    posts = [t.post_ms for t in triggered]
    first = summarize(db_first)
    client = summarize(client_first)
    script = summarize(script_first)
    total = summarize(e2e)
    post = summarize(posts)
    ctx.note(
        f"idle: {len(triggered)} runs of the 4+1 pipeline, one at a time (each awaited to its end), "
        "api + orchestrator + 1 worker; triggers give `sha`, so no git fetch per run; "
        "API rate limits off (COMET_RATE_LIMITS_ENABLED=false), one API process"
    )
    ctx.note(
        "trigger→first stage (db) = min(stage_attempts.started_at) - runs.created_at, both Postgres now(): "
        "from the API's request transaction start (after HTTP parsing, JWT and access check) through "
        "commit, relay → Kafka, orchestrator plan + commit, relay → Kafka, to the start of the worker's "
        "claim transaction"
    )
    ctx.note(
        "trigger→first stage (client) = the same end point from the moment before the bench sent the "
        "POST (adds HTTP client + server overhead before the API's transaction)"
    )
    ctx.note(
        "end-to-end = runs.finished_at - runs.created_at: 4 stages in parallel (each: claim, fresh "
        "`git clone --shared` checkout, bash, report), then the fan-in, then the orchestrator's finish"
    )
    ctx.note(
        "trigger→first script running = the first `$EPOCHREALTIME` a stage script of the run noted - the "
        "moment before the bench sent the POST (both wall clock): claim, checkout and bash start included"
    )
    return [
        Figure("trigger→first script running p50 (idle)", script.p50, "ms")
        .relative_to(kafka)
        .aiming(Aim.at_most(15)),
        Figure("trigger→first script running p99 (idle)", script.p99, "ms")
        .relative_to(kafka)
        .aiming(Aim.at_most(40)),
        Figure("trigger→first claim p50 (idle, db)", first.p50, "ms").relative_to(kafka),
        Figure("trigger→first claim p99 (idle, db)", first.p99, "ms").relative_to(kafka),
        Figure("trigger→first claim p50 (idle, client)", client.p50, "ms").relative_to(kafka),
        Figure("trigger→first claim p99 (idle, client)", client.p99, "ms").relative_to(kafka),
        Figure("POST /runs → 202 p50 (idle)", post.p50, "ms").relative_to(ctx.references.postgres.p50),
        Figure("4+1 pipeline end-to-end p50 (idle)", total.p50, "ms")
        .relative_to(kafka)
        .aiming(Aim.at_most(50)),
        Figure("4+1 pipeline end-to-end p99 (idle)", total.p99, "ms")
        .relative_to(kafka)
        .aiming(Aim.at_most(120)),
    ]


def _describe_xacts(xacts: Transactions, per: int, unit: str) -> str:
    if per <= 0:
        return "PostgreSQL transactions: not measured"
    return (
        f"PostgreSQL transactions per {unit} (pg_stat_database, the bench's own excluded; approximate: "
        "a backend's counters reach it up to ~1 s late, or 10 s once it falls idle): "
        f"≈ {xacts.commits / per:.0f} commits + {xacts.rollbacks / per:.0f} rollbacks"
    )


async def _ledger(p: Platform) -> CpuLedger:
    """Comet's processes, and PostgreSQL's and Kafka's (shown apart: they are part of the cost)."""
    return CpuLedger(
        {**{proc.name: proc.pid for proc in p.processes if proc.alive}, **await p.service_pids()}
    )


async def _spent(p: Platform, ledger: CpuLedger) -> dict[str, float]:
    return by_role(ledger.spent(await p.service_pids()))


def _note_failures(ctx: BenchContext, what: str, rows: list[RunTimings]) -> None:
    bad = [r for r in rows if r.status != "succeeded"]
    if bad:
        ctx.note(
            f"{what}: {len(bad)} of {len(rows)} runs did not succeed "
            f"(e.g. run {bad[0].run_id} is {bad[0].status})"
        )


# stages/s aims (issue 10): 2 workers with checkouts, and the same without.
THROUGHPUT_AIMS = {(2, True): 150.0, (2, False): 300.0}
WORKER_CPU_AIM_MS = 10.0


async def _throughput(
    ctx: BenchContext, p: Platform, workers: int, budget: Budget, *, checkout: bool = True
) -> list[Figure]:
    runs = budget.batch_runs
    pipeline = "fan-in" if checkout else "fan-in-no-checkout"
    label = f"{workers} worker(s) × 4 slots" + ("" if checkout else ", checkout: false")
    ctx.progress(f"pipeline: {runs} runs of 4+1, {label}, at most {budget.batch_cap_s:.0f} s")
    if workers == 1:
        ctx.note(
            f"stages/s: {runs} runs × {FAN_IN_STAGES} `true` stages triggered at once (8 requests in "
            "flight), succeeded stages / (last run finished_at - first run created_at); "
            f"workers run --concurrency 4; topics have {PARTITIONS} partitions"
        )
    started = time.monotonic()
    xacts_before = await p.transactions()
    ledger = await _ledger(p)
    batch = await trigger_batch(p, pipeline, runs)
    ids = [t.run_id for t in batch]
    try:
        await wait_finished(p, ids, timeout_s=max(1.0, budget.batch_cap_s - (time.monotonic() - started)))
        result: BatchResult = await batch_result(p, ids)
    except PlatformError:
        p.check_alive()
        cut = time.time()
        result = await batch_result(p, ids, cut=cut)
        ctx.note(
            f"{workers} worker(s): time cap of {budget.batch_cap_s:.0f} s reached with {result.succeeded} "
            f"of {result.total} stages done; figure = stages succeeded by then / (then - first run "
            "created_at); the unfinished runs were cancelled"
        )
        await asyncio.gather(*(p.cancel(i) for i in ids))
        await wait_finished(p, ids, timeout_s=60.0)
    else:
        _note_failures(ctx, f"{workers} worker(s)", list((await timings(p, ids)).values()))
        if result.succeeded != result.total:
            ctx.note(f"{workers} worker(s): {result.total - result.succeeded} stages did not succeed")
    spent = await _spent(p, ledger)
    await asyncio.sleep(STATS_LAG_S)
    xacts = await p.transactions() - xacts_before
    ctx.note(f"{label}: " + describe_cpu(spent, result.succeeded, "stage"))
    ctx.note(f"{label}: " + _describe_xacts(xacts, result.succeeded, "stage"))
    figure = Figure(f"stages/s, {label}", result.stages_per_s, "/s").relative_to(ctx.references.kafka.rate)
    aim = THROUGHPUT_AIMS.get((workers, checkout))
    figures = [figure.aiming(Aim.at_least(aim)) if aim is not None else figure]
    worker_cpu = sum(v for name, v in spent.items() if name.startswith("worker"))
    if (workers, checkout) in THROUGHPUT_AIMS and result.succeeded:
        figures.append(
            Figure(f"worker CPU per stage, {label}", worker_cpu * 1000 / result.succeeded, "ms")
            .relative_to(ctx.references.postgres.p50)
            .aiming(Aim.at_most(WORKER_CPU_AIM_MS))
        )
    return figures


async def _loaded_latency(ctx: BenchContext, p: Platform, seconds: float) -> list[Figure]:
    ctx.progress(f"pipeline: one-stage runs open-loop at {LOAD_RATE:.0f}/s for {seconds:.0f} s")
    load = await open_loop(p, "one", LOAD_RATE, seconds)
    ids = [t.run_id for t in load.triggered]
    started_ok = True
    try:
        await wait_started(p, ids, timeout_s=30.0)
    except PlatformError as exc:
        p.check_alive()
        started_ok = False
        ctx.note(f"{LOAD_RATE:.0f}/s: {exc}")
    with contextlib.suppress(PlatformError):  # only so the memory reading after the load is calm
        await wait_finished(p, ids, timeout_s=20.0)
    by_run = await timings(p, ids)
    rows = [by_run[t.run_id] for t in load.triggered if t.run_id in by_run]
    _note_failures(ctx, f"{LOAD_RATE:.0f}/s", rows)
    db_first = [ms for r in rows if (ms := r.first_stage_ms) is not None]
    sent = {t.run_id: t.sent_at for t in load.triggered}
    client_first = [(r.first_start - sent[r.run_id]) * 1000.0 for r in rows if r.first_start is not None]
    posts = [t.post_ms for t in load.triggered]
    scripts = p.script_starts()
    script_first = [(min(scripts[i]) - sent[i]) * 1000.0 for i in sent if scripts.get(i)]
    ctx.note(
        f"{LOAD_RATE:.0f}/s: {len(load.triggered)} one-stage runs triggered open-loop (one every "
        f"{1000 / LOAD_RATE:.0f} ms, regardless of answers) for {seconds:.0f} s, achieved "
        f"{load.achieved_rate:.1f}/s; {LOAD_WORKERS} workers × 4 slots"
        + (f"; {load.skipped} triggers skipped (100 in flight)" if load.skipped else "")
        + (f"; {len(load.errors)} failed, e.g. {load.errors[0]}" if load.errors else "")
        + ("" if started_ok else "; NOT every run started")
    )
    if not db_first:
        return []
    first, client, post = summarize(db_first), summarize(client_first), summarize(posts)
    kafka = ctx.references.kafka.p50
    script = summarize(script_first) if script_first else None
    scripted = (
        [
            Figure(f"trigger→script running p50 ({LOAD_RATE:.0f}/s)", script.p50, "ms").relative_to(kafka),
            Figure(f"trigger→script running p99 ({LOAD_RATE:.0f}/s)", script.p99, "ms").relative_to(kafka),
        ]
        if script is not None
        else []
    )
    return [
        *scripted,
        Figure(f"trigger→claim p50 ({LOAD_RATE:.0f}/s, db)", first.p50, "ms").relative_to(kafka),
        Figure(f"trigger→claim p99 ({LOAD_RATE:.0f}/s, db)", first.p99, "ms").relative_to(kafka),
        Figure(f"trigger→claim p50 ({LOAD_RATE:.0f}/s, client)", client.p50, "ms").relative_to(kafka),
        Figure(f"trigger→claim p99 ({LOAD_RATE:.0f}/s, client)", client.p99, "ms").relative_to(kafka),
        Figure(f"POST /runs → 202 p99 ({LOAD_RATE:.0f}/s)", post.p99, "ms").relative_to(
            ctx.references.postgres.p50
        ),
    ]
