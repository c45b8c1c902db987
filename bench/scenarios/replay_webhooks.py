"""Webhook replay: `replay webhooks --dry-run` deliveries/s, and live webhook latency while a replay runs

The bench project receives GitHub webhooks. A window of stored deliveries is written straight to
`webhook_deliveries` (signed GitHub pushes to `refs/heads/main`, which the pipeline's `on:`
matches, stored as accepted but never turned into runs: the outage a replay is for).

1. dry run: the command's own code (`cli.replay_webhooks.replay`, in the bench process, lines
   discarded) judges the whole window: each delivery read in keyset pages, re-parsed, and planned
   with the live `plan_delivery` (`.comet.yml` read once at the commit through a warmed mirror).
   Timed from the call to its return: deliveries/s.
2. live webhook latency: signed pushes to `refs/heads/bench-ignored` (recorded as ignored by the
   orchestrator) open-loop at a fixed rate against `comet api` with an orchestrator running —
   request→202 and the orchestrator's lag — first idle, then while `comet replay webhooks` (a
   real subprocess at its default pace) re-drives the window, so that the orchestrator creates
   and plans a run per replayed delivery at the same time (no workers: the runs stay queued).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from bench.platform import CometProcess, Platform, bench_platform, describe_problems
from bench.scenarios import BenchContext
from bench.scenarios._http import ClientPool, open_loop
from bench.scenarios.webhooks import (
    ACCEPTED,
    FIXTURE,
    IGNORED_REF,
    PROVIDER_REPO,
    WEBHOOK_PIPELINE,
    Intake,
    Lags,
    Step,
    _ledger,
    describe_load,
    github_push,
    signed_delivery,
)
from bench.stats import Aim, Figure, percentile
from cli.replay_webhooks import Options, replay
from config.settings import OrchestratorSettings
from orchestrator.planning import DefinitionReader
from workers.git import MirrorCache

MAIN = "refs/heads/main"
AIM_DRY_RUN_RATE = 2000.0
AIM_P99_FACTOR = 2.0
LIVE_RATE = 50.0  # live deliveries/s: a busy installation's webhook traffic
CONNECTIONS = 16
REPLAY_RATE = 200.0  # the command's default pace (COMET_WEBHOOK_REPLAY_RATE)
REPLAY_LEAD_S = 1.0  # the replay runs this long before the live step starts

_INSERT = """
INSERT INTO webhook_deliveries (id, provider, delivery_id, project_id, event, action, outcome, reason,
                                headers, body, run_id, redeliveries, received_at)
SELECT x.id, 'github', x.delivery_id, $1, 'push', NULL, 'accepted', NULL, x.headers::jsonb, x.body, NULL, 0,
       x.received_at
  FROM unnest($2::uuid[], $3::text[], $4::text[], $5::bytea[], $6::timestamptz[])
       AS x(id, delivery_id, headers, body, received_at)
"""
# Outbox and orchestrator lags of the live deliveries only (a replay's events carry replay_id).
_LIVE_LAGS = """
SELECT extract(epoch FROM o.published_at - o.created_at) * 1000 AS relayed_ms,
       extract(epoch FROM (SELECT min(i.processed_at) FROM inbox i WHERE i.event_id = o.event_id)
                          - o.created_at) * 1000 AS processed_ms
  FROM outbox o
 WHERE o.event_type = 'webhook.received' AND o.envelope->'payload'->>'replay_id' IS NULL
   AND o.created_at >= to_timestamp($1) AND o.created_at < to_timestamp($2)
"""
_UNCONSUMED = """
SELECT count(*) FROM outbox o
 WHERE o.event_type = 'webhook.received' AND NOT EXISTS (SELECT 1 FROM inbox i WHERE i.event_id = o.event_id)
"""
_REDRIVEN = "SELECT count(*) FROM webhook_deliveries WHERE redeliveries > 0"
_REPLAY_RUNS = "SELECT count(*) FROM runs WHERE trigger->>'kind' = 'replay'"


async def run(ctx: BenchContext) -> list[Figure]:
    stored = 4_000 if ctx.quick else 20_000
    step_s = 3.0 if ctx.quick else 6.0
    template = orjson.loads(FIXTURE.read_bytes())
    async with bench_platform(ctx.settings, {"webhooks": WEBHOOK_PIPELINE}, progress=ctx.progress) as p:
        secret = await p.enable_webhooks("github", PROVIDER_REPO)
        base = datetime.now(UTC) - timedelta(minutes=30)
        ctx.progress(f"replay_webhooks: storing {stored} deliveries")
        await _store(p, template, secret.encode(), stored, base)
        settings = OrchestratorSettings(**p.common)  # type: ignore[arg-type]
        figures = [await _dry_run(ctx, p, settings, stored, base)]
        p.start_orchestrator()
        api = await p.start_api()
        assert p.api_url is not None
        pool = ClientPool(p.api_url, CONNECTIONS)
        try:
            intake = Intake(pool, template, secret.encode(), p.shas["webhooks"])
            await pool.touch()
            await _step(p, intake, api, "warm-up", 2.0)
            await _catch_up(ctx, p, 5.0, "after the warm-up")
            idle, idle_lags = await _step(p, intake, api, "idle", step_s)
            await _catch_up(ctx, p, 5.0, "after the idle step")
            loaded, loaded_lags, replayed = await _while_replaying(ctx, p, intake, api, step_s, base)
        finally:
            await pool.aclose()
        figures += _figures(ctx, idle, idle_lags, loaded, loaded_lags, replayed, step_s)
        p.check_alive()
        for line in describe_problems(p.problems()):
            ctx.note(line)
    return figures


async def _store(p: Platform, template: dict[str, Any], secret: bytes, count: int, base: datetime) -> None:
    """`count` signed pushes to main, received a millisecond apart from `base`, in one statement per
    thousand (the rows the API would have stored)."""
    sha = p.shas["webhooks"]
    for start in range(0, count, 1000):
        ids, delivery_ids, headers, bodies, received = [], [], [], [], []
        for i in range(start, min(count, start + 1000)):
            payload = github_push(
                template, full_name=PROVIDER_REPO, ref=MAIN, sha=sha, before=secrets.token_hex(20)
            )
            d = signed_delivery(payload, secret, str(uuid.uuid4()))
            ids.append(uuid.uuid4())
            delivery_ids.append(d.delivery_id)
            headers.append(orjson.dumps({k.lower(): v for k, v in d.headers.items()}).decode())
            bodies.append(d.body)
            received.append(base + timedelta(milliseconds=i))
        await p.fetch(_INSERT, p.project_id, ids, delivery_ids, headers, bodies, received)


async def _dry_run(
    ctx: BenchContext, p: Platform, settings: OrchestratorSettings, stored: int, base: datetime
) -> Figure:
    git = MirrorCache(p.root / "git-replay")
    # Warm the mirror (a clone, once): the figure is about judging deliveries, not cloning.
    repo_url = str(await p.fetchval("SELECT repo_url FROM projects WHERE id = $1", p.project_id))
    await DefinitionReader(git).read(repo_url, MAIN, p.shas["webhooks"])
    options = Options(since=base.isoformat(), project=str(p.project_id), dry_run=True)
    ctx.progress(f"replay_webhooks: dry run over {stored} deliveries")
    started = time.perf_counter()
    counts = await replay(settings, options, emit=lambda _j: None, git=git)
    wall = time.perf_counter() - started
    ctx.note(
        f"dry run: {counts.summary(dry_run=True)} in {wall:.2f} s — the command's code in the bench "
        "process (start-up of `comet` excluded), per-delivery lines discarded; the window's deliveries "
        "read in pages of 500 (keyset on received_at, id), each re-parsed and planned with the live "
        "plan_delivery against `.comet.yml` at its commit (mirror warmed first)"
    )
    if counts.scanned != stored or counts.replayed != stored:
        ctx.note(
            f"UNEXPECTED: the dry run judged {counts.scanned} and would replay {counts.replayed} of {stored}"
        )
    return (
        Figure("replay webhooks --dry-run: deliveries judged", counts.scanned / wall, "/s")
        .relative_to(ctx.references.postgres.rate)
        .aiming(Aim.at_least(AIM_DRY_RUN_RATE))
    )


async def _step(
    p: Platform, intake: Intake, api: CometProcess, label: str, seconds: float
) -> tuple[Step, Lags]:
    deliveries = intake.prepare(round(LIVE_RATE * seconds))
    await intake.pool.touch()
    ledger = await _ledger(p, api)
    began, started = time.time(), time.perf_counter()
    load = await open_loop(intake.sender(deliveries), LIVE_RATE, seconds, max_in_flight=CONNECTIONS)
    step = Step(
        label, LIVE_RATE, load, ledger.spent(await p.service_pids()), time.perf_counter() - started, began
    )
    p.check_alive()
    await asyncio.sleep(1.0)  # let the orchestrator record the step's last deliveries
    return step, await _live_lags(p, step)


async def _catch_up(ctx: BenchContext, p: Platform, cap_s: float, label: str) -> None:
    """Wait (at most `cap_s`) until the orchestrator has consumed every `webhook.received` event."""
    deadline = time.monotonic() + cap_s
    pending = await p.fetchval(_UNCONSUMED)
    while pending and time.monotonic() < deadline:
        p.check_alive()
        await asyncio.sleep(0.1)
        pending = await p.fetchval(_UNCONSUMED)
    if pending:
        ctx.note(f"{label}: the orchestrator still had {pending} webhook events to consume after {cap_s:g} s")


async def _live_lags(p: Platform, step: Step) -> Lags:
    rows = await p.fetch(_LIVE_LAGS, step.began, step.began + step.wall_s)
    relayed = [float(r["relayed_ms"]) for r in rows if r["relayed_ms"] is not None]
    processed = [float(r["processed_ms"]) for r in rows if r["processed_ms"] is not None]
    return Lags(
        percentile(relayed, 50) if relayed else None,
        percentile(relayed, 99) if relayed else None,
        percentile(processed, 50) if processed else None,
        max(processed) if processed else None,
        len(processed),
        len(rows),
    )


async def _while_replaying(
    ctx: BenchContext, p: Platform, intake: Intake, api: CometProcess, step_s: float, base: datetime
) -> tuple[Step, Lags, int]:
    """The live step while `comet replay webhooks` re-drives about as many deliveries as it can in
    the step (a window sized to its pace), as its own process."""
    count = round(REPLAY_RATE * (REPLAY_LEAD_S + step_s + 1.0))
    until = base + timedelta(milliseconds=count)
    args = ["replay", "webhooks", "--since", base.isoformat(), "--until", until.isoformat()]
    args += ["--project", str(p.project_id), "--rate", f"{REPLAY_RATE:g}", "--quiet"]
    ctx.progress(
        f"replay_webhooks: live {LIVE_RATE:g}/s while replaying {count} deliveries at {REPLAY_RATE:g}/s"
    )
    replaying = p.start("replay", args, git_cache_dir=p.root / "git-replay")
    replaying.stopping = True  # it ends by itself; its exit status is noted
    try:
        await asyncio.sleep(REPLAY_LEAD_S)
        step, lags = await _step(p, intake, api, f"while a replay runs at {REPLAY_RATE:g}/s", step_s)
        deadline = time.monotonic() + 30.0
        while replaying.alive and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        code = replaying.popen.returncode
    finally:
        if replaying.alive:
            with contextlib.suppress(ProcessLookupError):
                await replaying.stop()
    redriven = int(await p.fetchval(_REDRIVEN))
    summary = next((line for line in reversed(replaying.output().splitlines()) if "scanned" in line), "?")
    p.processes.remove(replaying)  # its output is its summary, not log lines to scan for problems
    await _catch_up(ctx, p, 10.0, "after the replay")
    runs = int(await p.fetchval(_REPLAY_RUNS))
    ctx.note(
        f"replay: `comet replay webhooks --rate {REPLAY_RATE:g}` over {count} stored deliveries (a subprocess, "
        f"started {REPLAY_LEAD_S:g} s before the live step), exit {code}: {summary}; {redriven} deliveries "
        f"re-driven, {runs} replay runs created by the orchestrator (no workers: they stay queued)"
    )
    return step, lags, redriven


def _ms(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f} ms"


def _figures(
    ctx: BenchContext,
    idle: Step,
    idle_lags: Lags,
    loaded: Step,
    loaded_lags: Lags,
    replayed: int,
    step_s: float,
) -> list[Figure]:
    pg = ctx.references.postgres
    cpus = os.cpu_count() or 1
    for step, lags in ((idle, idle_lags), (loaded, loaded_lags)):
        ctx.note(
            f"live webhooks {step.label}: {LIVE_RATE:g}/s open-loop for {step_s:g} s from {CONNECTIONS} "
            f"clients, pushes to {IGNORED_REF}: {describe_load(step.load)}; the orchestrator recorded "
            f"{lags.processed} of {lags.total} within a second of the step's end (lag p50 "
            f"{_ms(lags.processed_p50)}, max {_ms(lags.processed_max)}); {cpus} CPUs"
        )
    figures: list[Figure] = []
    idle_latency, loaded_latency = idle.load.latency(ACCEPTED), loaded.load.latency(ACCEPTED)
    if idle_latency is None or loaded_latency is None:
        ctx.note("no 202 in a step: no latency figures")
        return figures
    figures += [
        Figure("live webhooks, idle: request→202 p50", idle_latency.p50, "ms").relative_to(pg.p50),
        Figure("live webhooks, idle: request→202 p99", idle_latency.p99, "ms").relative_to(pg.p50),
        Figure(f"live webhooks, {loaded.label}: request→202 p50", loaded_latency.p50, "ms").relative_to(
            pg.p50
        ),
        Figure(f"live webhooks, {loaded.label}: request→202 p99", loaded_latency.p99, "ms")
        .relative_to(pg.p50)
        .aiming(Aim.at_most(AIM_P99_FACTOR * idle_latency.p99)),
    ]
    if idle_lags.processed_p50 is not None and loaded_lags.processed_p50 is not None:
        figures.append(
            Figure(
                f"live webhooks, {loaded.label}: 202→orchestrator recorded p50",
                loaded_lags.processed_p50,
                "ms",
            )
        )
    if replayed == 0:
        ctx.note("UNEXPECTED: the replay re-drove nothing")
    return figures
