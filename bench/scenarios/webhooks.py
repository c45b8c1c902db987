"""Webhook ingest: signed GitHub pushes open-loop at fixed rates, alone and while runs execute

The bench project is set to receive GitHub webhooks (provider `github`, a `provider_repo` and a
webhook secret, written to the throwaway database). Every delivery is a realistic signed push
(tests/fixtures/webhooks/github/push_branch.json with a distinct `before` each, so N distinct
signed bodies) with its own `X-GitHub-Delivery`, prepared before its step so signing is not
timed. The pushes go to `refs/heads/bench-ignored`, which the pipeline's `on:` does not match:
"alone" measures intake without starting runs, though the orchestrator still consumes each
`webhook.received` event, reads `.comet.yml` at the commit (cached) and records the delivery as
ignored, on the same CPUs.

First the load generator alone: the same requests closed-loop against a server that answers at
once (what the bench itself can send on this machine). Then, for `COMET_API_WORKERS=1` and 2:

1. alone: open-loop at 50, 100, 250, 500, 1000 and 2000 deliveries/s, a few seconds each (a
   request goes out at its slot whether or not earlier ones were answered; at most 64 in flight,
   one keep-alive connection each, else the slot is skipped and counted); between steps the
   orchestrator gets a bounded time to catch up;
2. while runs execute: the highest rate sustained alone, again, while a stream of real runs
   (API triggers, 3 stages of `sleep 0.2`, 2 workers of 4 slots) executes.

3. native: `wrk` (Debian's package; `_wrk.py`) closed loop, 2 threads and 32 connections, each
   request a distinct signed delivery: acknowledged/s (aim ≥ 1,000 with 2 API processes), with
   wrk's own CPU share, so a generator-bound figure says so; then the bench's open loop at half
   that rate for the p99 (aim ≤ 50 ms).

Afterwards every delivery answered 202 is looked up in `webhook_deliveries`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import hmac
import os
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.machine import CpuLedger, by_role
from bench.platform import CometProcess, Platform, PlatformError, bench_platform, describe_problems
from bench.scenarios import BenchContext
from bench.scenarios._http import ClientPool, Load, Send, closed_loop, null_server, open_loop
from bench.scenarios._runs import ONE_STAGE, wait_finished, warm_up
from bench.scenarios._runs import open_loop as trigger_open_loop
from bench.scenarios._wrk import WrkError, raw_request, run_wrk, wrk_path
from bench.stats import Aim, Figure, percentile

FIXTURE = (
    Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "webhooks" / "github" / "push_branch.json"
)
PROVIDER_REPO = "comet-bench/webhooks"
IGNORED_REF = "refs/heads/bench-ignored"
PATH = "/api/v1/webhooks/github"
ACCEPTED = 202
RATES = (50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0)
AIM_RATE = 2000.0
AIM_P99_MS = 20.0
SUSTAINED_SHARE = 0.9
CONNECTIONS = 64
WARM_UP_DELIVERIES = 128
LOAD_GENERATOR_MAX_RATE = 4_000.0  # requests/s the null-server run prepares for (≈ 1,200/s measured)
RUNS_RATE = 4.0  # runs/s of the background stream: ≈ 12 stages/s of `sleep 0.2`
RUNS_LEAD_S = 1.5  # the stream runs this long before the measured step starts
RUNS_WORKERS = 2
# PostgreSQL backends flush their statistics at most once a second while busy.
STATS_LAG_S = 1.2
# The native load (issue 10): acknowledged/s with 2 API processes, and p99 at half that rate.
NATIVE_AIM_RATE = 1000.0
NATIVE_AIM_P99_MS = 50.0
NATIVE_THREADS = 2
NATIVE_CONNECTIONS = 32
NATIVE_MAX_RATE = 4000.0  # requests/s prepared for: far above what 2 CPUs can acknowledge

WEBHOOK_PIPELINE = """\
name: bench-webhooks
on:
  push: {branches: [main]}
  manual: true
stages:
  a:
    run: sleep 0.2
  b:
    run: sleep 0.2
  c:
    needs: [a, b]
    run: sleep 0.2
"""

_PENDING = "SELECT count(*) FROM webhook_deliveries WHERE outcome = 'accepted' AND run_id IS NULL"
_STORED = (
    "SELECT count(*) FROM webhook_deliveries WHERE provider = 'github' AND delivery_id = ANY($1::text[])"
)
_IGNORED = """
SELECT count(*) FROM webhook_deliveries
 WHERE provider = 'github' AND delivery_id = ANY($1::text[]) AND outcome = 'ignored'
"""
_LAGS = """
SELECT extract(epoch FROM o.published_at - o.created_at) * 1000 AS relayed_ms,
       extract(epoch FROM (SELECT min(i.processed_at) FROM inbox i WHERE i.event_id = o.event_id)
                          - o.created_at) * 1000 AS processed_ms
  FROM outbox o
 WHERE o.event_type = 'webhook.received'
   AND o.created_at >= to_timestamp($1) AND o.created_at < to_timestamp($2)
"""


# -- pure helpers (unit-tested) -----------------------------------------------------------------


def github_push(
    template: dict[str, Any], *, full_name: str, ref: str, sha: str, before: str
) -> dict[str, Any]:
    """A GitHub push payload like `template` for `full_name`, pushing `ref` from `before` to `sha`."""
    body = copy.deepcopy(template)
    body["ref"], body["before"], body["after"] = ref, before, sha
    body["repository"]["full_name"] = full_name
    body["repository"]["name"] = full_name.rpartition("/")[2]
    body["compare"] = f"https://github.com/{full_name}/compare/{before[:12]}...{sha[:12]}"
    body["head_commit"] = body["commits"][-1] | {"id": sha}
    return body


@dataclass(frozen=True, slots=True)
class Delivery:
    delivery_id: str
    body: bytes
    headers: dict[str, str]


def signed_delivery(payload: dict[str, Any], secret: bytes, delivery_id: str) -> Delivery:
    """The request GitHub sends for `payload`: compact JSON body, both signatures, its headers."""
    body = orjson.dumps(payload)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/bench",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery_id,
        "X-GitHub-Hook-ID": "1",
        "X-Hub-Signature": "sha1=" + hmac.new(secret, body, hashlib.sha1).hexdigest(),
        "X-Hub-Signature-256": "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest(),
    }
    return Delivery(delivery_id, body, headers)


def prepare(
    template: dict[str, Any], count: int, *, secret: bytes, full_name: str, ref: str, sha: str
) -> list[Delivery]:
    """`count` distinct signed pushes (a random `before` each) with unique delivery ids."""
    out = []
    for _ in range(count):
        payload = github_push(template, full_name=full_name, ref=ref, sha=sha, before=secrets.token_hex(20))
        out.append(signed_delivery(payload, secret, str(uuid.uuid4())))
    return out


@dataclass
class Step:
    """One measured load: its label, the rate asked for, what came back, the CPU it cost."""

    label: str
    rate: float
    load: Load
    cpu: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    began: float = 0.0  # Unix time the load began (to find its rows by their timestamps)

    @property
    def achieved(self) -> float:
        return self.load.throughput(ACCEPTED)

    @property
    def sustained(self) -> bool:
        """Every request answered 202, none skipped, and at least 90 % of the asked rate reached (the
        last answers come after the last request went out, so a short step never reaches 100 %)."""
        return self.load.other_than(ACCEPTED) == 0 and self.achieved >= SUSTAINED_SHARE * self.rate


def highest_sustained(steps: Sequence[Step]) -> Step | None:
    """The step with the highest asked rate that was sustained, if any."""
    ok = [s for s in steps if s.sustained]
    return max(ok, key=lambda s: s.rate) if ok else None


def group_cpu(spent: dict[str, float]) -> dict[str, float]:
    """CPU seconds by role: `api/123` → api, `postgres/45` → postgres, `worker0` → workers."""
    out: dict[str, float] = {}
    for role, seconds in by_role(spent).items():
        group = "workers" if role.startswith("worker") else role
        out[group] = out.get(group, 0.0) + seconds
    return out


def describe_step_cpu(spent: dict[str, float], per: int, wall_s: float, cpus: int) -> str:
    """`CPU per 202: api 1.20 ms, …, rest of the machine 0.80 ms; machine 93% busy of 2 CPUs`."""
    if per <= 0 or not spent:
        return "CPU: not measured"
    grouped = group_cpu(spent)
    ours = {k: v for k, v in grouped.items() if k != "machine"}
    text = "CPU per 202: " + ", ".join(f"{k} {v * 1000 / per:.2f} ms" for k, v in ours.items())
    if "machine" in grouped:
        rest = max(0.0, grouped["machine"] - sum(ours.values()))  # ticks of 10 ms: never below 0
        text += f", rest of the machine{'' if 'kafka' in grouped else ' (Kafka included)'} {rest * 1000 / per:.2f} ms"
        if wall_s > 0:
            text += f"; machine {grouped['machine'] / (wall_s * cpus) * 100:.0f}% busy of {cpus} CPUs"
    return text


def describe_load(load: Load) -> str:
    """`achieved 98/s, p50 9.1 ms, p99 31.0 ms; sent 300, 202: 300, not 202: 0`."""
    latency = load.latency(ACCEPTED)
    timing = "no 202" if latency is None else f"p50 {latency.p50:.1f} ms, p99 {latency.p99:.1f} ms"
    return f"achieved {load.throughput(ACCEPTED):.0f}/s, {timing}; {load.describe(ACCEPTED)}"


# -- the scenario --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Budget:
    """How long each load lasts; every wait is bounded too."""

    step_s: float
    runs_step_s: float
    catch_up_s: float
    ceiling_s: float

    @classmethod
    def of(cls, ctx: BenchContext) -> Budget:
        return cls(1.5, 2.0, 3.0, 1.0) if ctx.quick else cls(3.0, 3.0, 4.0, 2.0)


@dataclass
class Intake:
    """Sends deliveries of the bench project to one API, and remembers how each was answered."""

    pool: ClientPool
    template: dict[str, Any]
    secret: bytes
    sha: str
    acknowledged: list[str] = field(default_factory=list)
    not_acknowledged: list[str] = field(default_factory=list)

    def prepare(self, count: int) -> list[Delivery]:
        return prepare(
            self.template, count, secret=self.secret, full_name=PROVIDER_REPO, ref=IGNORED_REF, sha=self.sha
        )

    def sender(self, deliveries: Sequence[Delivery], *, record: bool = True) -> Send:
        async def send(index: int) -> int:
            d = deliveries[index]
            try:
                async with self.pool.client() as client:
                    response = await client.post(PATH, content=d.body, headers=d.headers)
            except BaseException:
                if record:
                    self.not_acknowledged.append(d.delivery_id)
                raise
            if record:
                ok = response.status_code == ACCEPTED
                (self.acknowledged if ok else self.not_acknowledged).append(d.delivery_id)
            return response.status_code

        return send


async def run(ctx: BenchContext) -> list[Figure]:
    budget = Budget.of(ctx)
    template = orjson.loads(FIXTURE.read_bytes())
    figures = [await _load_generator(ctx, template, budget)]
    async with bench_platform(
        ctx.settings, {"one": ONE_STAGE, "webhooks": WEBHOOK_PIPELINE}, progress=ctx.progress
    ) as p:
        secret = await p.enable_webhooks("github", PROVIDER_REPO)
        p.start_orchestrator()
        body_size = len(
            prepare(template, 1, secret=b"x", full_name=PROVIDER_REPO, ref=IGNORED_REF, sha="0" * 40)[0].body
        )
        ctx.note(
            f"each delivery: POST {PATH}, a signed GitHub push ({body_size} B of compact JSON) to {IGNORED_REF}; "
            "request→202 timed in the bench; the 202 comes once the API's transaction storing the delivery "
            "row and its `webhook.received` outbox event has committed (the outbox relay publishes it to "
            "Kafka afterwards: its lag is given per step)"
        )
        ctx.note(
            f"open loop: one request every 1/rate s for {budget.step_s:g} s per rate, {CONNECTIONS} httpx "
            f"clients of one keep-alive connection each, at most {CONNECTIONS} in flight (a slot due while "
            f"{CONNECTIONS} are unanswered is skipped); achieved = 202s / (first sent → last 202); sustained "
            f"= all 202, none skipped, ≥ {SUSTAINED_SHARE:.0%} of the rate; latency percentiles over the "
            "202s; API rate limits off (COMET_RATE_LIMITS_ENABLED=false)"
        )
        pool: ClientPool | None = None
        intake: Intake | None = None
        try:
            for api_workers in (1, 2):
                api = await _restart_api(ctx, p, api_workers)
                assert p.api_url is not None
                if pool is not None:
                    await pool.aclose()
                pool = ClientPool(p.api_url, CONNECTIONS)
                if intake is None:
                    intake = Intake(pool, template, secret.encode(), p.shas["webhooks"])
                intake.pool = pool
                figures += await _configuration(ctx, p, intake, api, api_workers, budget)
        finally:
            if pool is not None:
                await pool.aclose()
        assert intake is not None
        await _verify(ctx, p, intake, budget.catch_up_s)
        for line in describe_problems(p.problems()):
            ctx.note(line)
    return figures


async def _load_generator(ctx: BenchContext, template: dict[str, Any], budget: Budget) -> Figure:
    """What the bench's own HTTP client sends closed-loop to a server that answers at once."""
    ctx.progress(f"webhooks: the load generator alone for {budget.ceiling_s:g} s")
    count = round(LOAD_GENERATOR_MAX_RATE * budget.ceiling_s)  # its budget in count, beside its time
    deliveries = prepare(template, count, secret=b"x", full_name=PROVIDER_REPO, ref=IGNORED_REF, sha="0" * 40)
    async with null_server() as url:
        pool = ClientPool(url, CONNECTIONS)
        try:
            intake = Intake(pool, template, b"x", "0" * 40)
            await pool.touch()
            ledger = CpuLedger({})
            load = await closed_loop(
                intake.sender(deliveries, record=False),
                CONNECTIONS,
                budget.ceiling_s,
                max_requests=len(deliveries),
            )
            spent = ledger.spent()
        finally:
            await pool.aclose()
    per = len(load.samples)
    bench_ms = spent.get("bench", 0.0) * 1000 / per if per else 0.0
    ctx.note(
        f"load generator alone: the same requests, closed-loop from {CONNECTIONS} clients to a null HTTP "
        f"server (a subprocess answering 202 at once): {describe_load(load)}; bench CPU {bench_ms:.2f} ms "
        "per request; this bounds every rate below (the bench shares the machine with Comet)"
    )
    return Figure("webhooks: load generator alone (null server)", load.throughput(ACCEPTED), "/s")


async def _restart_api(ctx: BenchContext, p: Platform, api_workers: int) -> CometProcess:
    for old in p.live("api"):
        await old.stop()
    ctx.progress(f"webhooks: comet api with COMET_API_WORKERS={api_workers}")
    return await p.start_api(api_workers=api_workers)


def _label(api_workers: int) -> str:
    return f"{api_workers} API process{'es' if api_workers > 1 else ''}"


async def _configuration(
    ctx: BenchContext, p: Platform, intake: Intake, api: CometProcess, api_workers: int, budget: Budget
) -> list[Figure]:
    label = _label(api_workers)
    await intake.pool.touch()
    warm = intake.prepare(WARM_UP_DELIVERIES)  # opens nothing new; warms the API's caches and pools
    await closed_loop(intake.sender(warm), CONNECTIONS // 4, 30.0, max_requests=len(warm))
    await _catch_up(ctx, p, budget.catch_up_s, f"{label}, after the warm-up")
    steps: list[Step] = []
    xacts_before = await p.transactions()
    for rate in RATES:
        ctx.progress(f"webhooks: {label}, {rate:.0f}/s for {budget.step_s:g} s")
        step = await _step(p, intake, api, f"{rate:.0f}/s alone", rate, budget.step_s)
        steps.append(step)
        _note_step(ctx, label, step, await _lags(p, step))
        await _catch_up(ctx, p, budget.catch_up_s, f"{label}, after {rate:.0f}/s")
    await asyncio.sleep(STATS_LAG_S)
    xacts = await p.transactions() - xacts_before
    delivered = sum(len(s.load.with_status(ACCEPTED)) for s in steps)
    if delivered:
        ctx.note(
            f"{label}: ≈ {xacts.commits / delivered:.1f} PostgreSQL commits + {xacts.rollbacks / delivered:.1f} "
            "rollbacks per 202 over the steps alone (the API's request and relay transactions and the "
            "orchestrator's; pg_stat_database, the bench's own excluded, approximate)"
        )
    best = highest_sustained(steps)
    same = best or steps[0]
    loaded = await _while_runs(ctx, p, intake, api, label, same.rate, budget)
    figures = _figures(ctx, label, steps, best, same, loaded)
    figures += await _native(ctx, p, intake, api, api_workers, budget)
    return figures


async def _native(
    ctx: BenchContext, p: Platform, intake: Intake, api: CometProcess, api_workers: int, budget: Budget
) -> list[Figure]:
    """wrk closed loop for the acknowledged rate; the bench's open loop at half of it for the p99."""
    label = _label(api_workers)
    if wrk_path() is None:
        ctx.note(f"{label}, native load: NOT measured — wrk is not installed (apt-get install wrk)")
        return []
    await _catch_up(ctx, p, budget.catch_up_s, f"{label}, before the native load")
    seconds = max(2.0, 2 * budget.step_s)
    deliveries = intake.prepare(round(NATIVE_MAX_RATE * seconds))
    assert p.api_url is not None
    requests = [raw_request(p.api_url, PATH, d.headers, d.body) for d in deliveries]
    ctx.progress(f"webhooks: {label}, wrk closed loop for {seconds:g} s")
    try:
        result = await run_wrk(
            p.api_url,
            requests,
            seconds=seconds,
            connections=NATIVE_CONNECTIONS,
            threads=NATIVE_THREADS,
            workdir=p.root / "wrk",
        )
    except WrkError as exc:
        ctx.note(f"{label}, native load: NOT measured — {exc}")
        return []
    p.check_alive()
    stored = int(await p.fetchval(_STORED, [d.delivery_id for d in deliveries]))
    acknowledged = result.count(ACCEPTED)
    ctx.note(
        f"{label}, native load ({NATIVE_THREADS} wrk threads × {NATIVE_CONNECTIONS // NATIVE_THREADS} "
        f"keep-alive connections, closed loop, {seconds:g} s, every request a distinct signed delivery): "
        + result.describe(ACCEPTED)
        + f"; {stored} of the deliveries are in webhook_deliveries"
        + (" (all acknowledged ones kept)" if stored >= acknowledged else " — LOST acknowledged deliveries")
    )
    await _catch_up(ctx, p, budget.catch_up_s * 3, f"{label}, after the native load")
    rate = result.rate(ACCEPTED)
    aimed = api_workers == 2
    generator = " (generator-bound)" if result.generator_saturated else ""
    acknowledged_figure = Figure(
        f"webhooks, {label}: acknowledged/s, wrk closed loop{generator}", rate, "/s"
    ).relative_to(ctx.references.postgres.rate)
    figures = [acknowledged_figure.aiming(Aim.at_least(NATIVE_AIM_RATE)) if aimed else acknowledged_figure]
    if rate < 2:
        return figures
    half = rate / 2
    ctx.progress(f"webhooks: {label}, open loop at half that rate ({half:.0f}/s)")
    step = await _step(p, intake, api, f"{half:.0f}/s (half the wrk rate)", half, budget.step_s * 2)
    _note_step(ctx, label, step, await _lags(p, step))
    latency = step.load.latency(ACCEPTED)
    if latency is not None:
        p99 = Figure(f"webhooks, {label}: request→202 p99 at half that rate", latency.p99, "ms").relative_to(
            ctx.references.postgres.p50
        )
        figures.append(p99.aiming(Aim.at_most(NATIVE_AIM_P99_MS)) if aimed else p99)
    await _catch_up(ctx, p, budget.catch_up_s, f"{label}, after half the wrk rate")
    return figures


async def _ledger(p: Platform, api: CometProcess) -> CpuLedger:
    pids = {proc.name: proc.pid for proc in p.processes if proc.alive}
    pids.update({f"api/{pid}": pid for pid in api.descendants()})  # uvicorn's worker processes
    pids.update(await p.service_pids())
    return CpuLedger(pids)


async def _step(
    p: Platform, intake: Intake, api: CometProcess, label: str, rate: float, seconds: float
) -> Step:
    deliveries = intake.prepare(round(rate * seconds))
    await intake.pool.touch()  # re-open connections uvicorn closed while they were idle
    ledger = await _ledger(p, api)
    began, started = time.time(), time.perf_counter()
    load = await open_loop(intake.sender(deliveries), rate, seconds, max_in_flight=CONNECTIONS)
    wall = time.perf_counter() - started
    p.check_alive()
    return Step(label, rate, load, ledger.spent(await p.service_pids()), wall, began)


@dataclass(frozen=True, slots=True)
class Lags:
    relayed_p50: float | None
    relayed_p99: float | None
    processed_p50: float | None
    processed_max: float | None
    processed: int
    total: int


async def _lags(p: Platform, step: Step) -> Lags:
    """Outbox relay and orchestrator lags of the deliveries stored during the step (the database
    runs on this machine: its clock is the bench's)."""
    rows = await p.fetch(_LAGS, step.began, step.began + step.wall_s)
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


def _ms(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f} ms"


def _note_step(ctx: BenchContext, label: str, step: Step, lags: Lags) -> None:
    late = step.load.lateness()
    ctx.note(
        f"{label}, {step.label}: {describe_load(step.load)}; sends late p99 {_ms(late.p99 if late else None)}; "
        + describe_step_cpu(step.cpu, len(step.load.with_status(ACCEPTED)), step.wall_s, os.cpu_count() or 1)
        + f"; outbox relay lag p50 {_ms(lags.relayed_p50)}, p99 {_ms(lags.relayed_p99)}; the orchestrator "
        f"had consumed {lags.processed} of {lags.total} by the step's end (lag p50 {_ms(lags.processed_p50)}, "
        f"max {_ms(lags.processed_max)})"
    )


async def _catch_up(ctx: BenchContext, p: Platform, cap_s: float, label: str) -> None:
    """Wait (at most `cap_s`) until the orchestrator has recorded every delivery stored so far."""
    deadline = time.monotonic() + cap_s
    pending = await p.fetchval(_PENDING)
    while pending and time.monotonic() < deadline:
        p.check_alive()
        await asyncio.sleep(0.1)
        pending = await p.fetchval(_PENDING)
    if pending:
        ctx.note(f"{label}: the orchestrator still had {pending} deliveries to record after {cap_s:g} s")


async def _while_runs(
    ctx: BenchContext, p: Platform, intake: Intake, api: CometProcess, label: str, rate: float, budget: Budget
) -> Step:
    while len(p.live("worker")) < RUNS_WORKERS:
        p.start_worker()
    ctx.progress(f"webhooks: {label}, warming up {RUNS_WORKERS} workers")
    await warm_up(p)
    stream_s = RUNS_LEAD_S + budget.runs_step_s + 1.0
    ctx.progress(f"webhooks: {label}, {rate:.0f}/s for {budget.runs_step_s:g} s while runs execute")
    stream = asyncio.create_task(trigger_open_loop(p, "webhooks", RUNS_RATE, stream_s, max_in_flight=20))
    try:
        await asyncio.sleep(RUNS_LEAD_S)
        step = await _step(p, intake, api, f"{rate:.0f}/s while runs execute", rate, budget.runs_step_s)
        lags = await _lags(p, step)
        triggered = await stream
    finally:
        if not stream.done():
            stream.cancel()
            with contextlib.suppress(BaseException):
                await stream
    ids = [t.run_id for t in triggered.triggered]
    finished = True
    try:
        await wait_finished(p, ids, timeout_s=30.0)
    except PlatformError:
        p.check_alive()
        finished = False
    rows = await p.fetch(
        "SELECT status, count(*) AS n FROM runs WHERE id = ANY($1::uuid[]) GROUP BY status", ids
    )
    statuses = ", ".join(f"{r['status']} {r['n']}" for r in rows) or "none"
    stages = await p.fetchval(
        "SELECT count(*) FROM stage_attempts WHERE run_id = ANY($1::uuid[]) AND started_at IS NOT NULL", ids
    )
    ctx.note(
        f"{label}, while runs execute: {len(ids)} runs of 3 `sleep 0.2` stages (2 parallel, then 1) "
        f"triggered over the API at {RUNS_RATE:g}/s (achieved {triggered.achieved_rate:.1f}/s) from "
        f"{RUNS_LEAD_S:g} s before the step to 1 s after it, {RUNS_WORKERS} workers × 4 slots; {stages} "
        f"stage attempts started; runs: {statuses}"
        + ("" if finished else " (not all finished within 30 s)")
        + (
            f"; {len(triggered.errors)} triggers failed, e.g. {triggered.errors[0]}"
            if triggered.errors
            else ""
        )
    )
    _note_step(ctx, label, step, lags)
    await _catch_up(ctx, p, budget.catch_up_s, f"{label}, after the runs")
    return step


def _figures(
    ctx: BenchContext, label: str, steps: Sequence[Step], best: Step | None, same: Step, loaded: Step
) -> list[Figure]:
    pg = ctx.references.postgres
    top = max(steps, key=lambda s: s.achieved)
    aim = next((s for s in steps if s.rate == AIM_RATE), steps[-1])
    figures = [
        Figure(f"webhooks, {label}: highest rate sustained", best.rate if best else 0.0, "/s")
        .relative_to(pg.rate)
        .aiming(Aim.at_least(AIM_RATE)),
        Figure(f"webhooks, {label}: most 202/s reached ({top.label})", top.achieved, "/s").relative_to(
            pg.rate
        ),
    ]

    def latencies(step: Step, name: str, *, aimed: bool) -> list[Figure]:
        latency = step.load.latency(ACCEPTED)
        if latency is None:
            return []
        p99 = Figure(f"{name} p99", latency.p99, "ms").relative_to(pg.p50)
        return [
            Figure(f"{name} p50", latency.p50, "ms").relative_to(pg.p50),
            p99.aiming(Aim.below(AIM_P99_MS)) if aimed else p99,
        ]

    prefix = f"webhooks, {label}"
    figures += latencies(same, f"{prefix}, {same.label}: request→202", aimed=True)
    figures.append(
        Figure(f"{prefix}, {aim.label}: 202/s", aim.achieved, "/s")
        .relative_to(pg.rate)
        .aiming(Aim.at_least(AIM_RATE))
    )
    figures += latencies(aim, f"{prefix}, {aim.label}: request→202", aimed=True)
    figures.append(Figure(f"{prefix}, {loaded.label}: 202/s", loaded.achieved, "/s").relative_to(pg.rate))
    figures += latencies(loaded, f"{prefix}, {loaded.label}: request→202", aimed=True)
    return figures


async def _verify(ctx: BenchContext, p: Platform, intake: Intake, cap_s: float) -> None:
    """Every delivery answered 202 must be in `webhook_deliveries`."""
    acknowledged = list(dict.fromkeys(intake.acknowledged))
    stored = int(await p.fetchval(_STORED, acknowledged))
    others = list(dict.fromkeys(intake.not_acknowledged))
    stored_others = int(await p.fetchval(_STORED, others)) if others else 0
    await _catch_up(ctx, p, cap_s, "at the end")
    ignored = int(await p.fetchval(_IGNORED, acknowledged))
    verdict = (
        f"all {stored} are in webhook_deliveries: nothing acknowledged was lost"
        if stored == len(acknowledged)
        else f"LOST: only {stored} of them are in webhook_deliveries"
    )
    ctx.note(
        f"durability: {len(acknowledged)} deliveries answered 202 in all (warm-ups included); {verdict}; "
        f"{ignored} of them recorded as ignored by the orchestrator by the end"
        + (f"; {len(others)} not answered 202, of which {stored_others} stored anyway" if others else "")
    )
