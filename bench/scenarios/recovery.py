"""Recovery under load: kill -9 of a worker, of the orchestrator, a broker restart; static vs dynamic members

One platform per membership mode (1 api, 1 orchestrator, 2 workers of concurrency 4, 6
partitions per topic): with static membership every process has its own `COMET_INSTANCE_ID`
(`bench-orchestrator-1`, `bench-worker-1`, …; Kafka KIP-345), without it none does. Under a
steady open-loop stream of one-stage runs, three faults, one after the other:

1. a worker is killed with SIGKILL and started again at once with the same settings (as a
   supervisor would): kill → the restarted worker's first stage start (from its Kafka partitions
   or its Postgres sweep, whichever comes first); the longest stretch without any stage start in
   the whole system from the kill until the stream ends (the pause for the others). Apart, what
   membership decides: the restarted process registered (up) → its first stage from its own
   partitions, and the other worker's longest stretch without a stage from its partitions (a
   rebalance revokes them; the sweep claims what waits meanwhile);
2. the orchestrator is killed and started again at once: kill → the first start of a stage
   planned after the kill (attempts queued earlier still start meanwhile, from Kafka);
3. the broker is restarted (`scripts/kafka.sh stop`, then `start`): its readiness (and the stop)
   → the first start, after it was ready, of a run triggered after the stop began.

Stage starts are `stage_attempts.started_at` (the worker's claim transaction), fault times the
bench's clock on the same machine. Each case streams long enough after its fault to see a dynamic
group's rebalance (a session timeout and then some), then every run it triggered must succeed, with
a second attempt only where a killed worker's attempt was lost (its lease expires first).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass

from bench.broker import LOG as BROKER_LOG
from bench.broker import broker_outage, log_size, read_log
from bench.platform import Platform, PlatformError, bench_platform, describe_problems
from bench.scenarios import BenchContext
from bench.scenarios._recovery import (
    Attempt,
    Audit,
    audit,
    broker_lines,
    describe_events,
    first_start,
    group_events,
    longest_gap,
    ms_after,
)
from bench.scenarios._runs import OpenLoop, Stream, streaming, wait_finished, warm_up, worker_ids
from bench.stats import Aim, Figure

RECOVERY_ONE = """\
name: bench-recovery
stages:
  only:
    run: "true"
    retry:
      count: 2
      when: [lost_worker]
"""
PARTITIONS = 6
WORKERS = 2
CONCURRENCY = 4
AIM_RECOVERY_MS = 3000.0  # the aim for a restarted process (and a restarted broker)
AIM_GAP_MS = 1000.0  # "no pause for the others": a rebalance or a sweep would take 2 s or more
FINISH_TIMEOUT_S = 90.0  # a lost attempt's lease (15 s) expires before its retry runs
RECOVERY_CAP_S = 90.0  # beyond the consumers' 60 s no-progress watchdog


@dataclass(frozen=True, slots=True)
class Mode:
    label: str
    static: bool

    def ids(self, name: str) -> dict[str, object]:
        return {"instance_id": f"bench-{name}"} if self.static else {}


MODES = (Mode("static", True), Mode("dynamic", False))


@dataclass(frozen=True, slots=True)
class Budget:
    rate: float  # triggers per second
    steady_s: float  # streaming before the fault
    settle_s: float  # streaming after the first start that shows recovery
    observe_s: float  # streaming after the fault at least

    @classmethod
    def of(cls, ctx: BenchContext) -> Budget:
        session_s = ctx.settings.kafka_session_timeout_s
        if ctx.quick:
            return cls(rate=10.0, steady_s=1.5, settle_s=1.0, observe_s=session_s + 1.0)
        return cls(rate=15.0, steady_s=2.5, settle_s=2.0, observe_s=session_s + 2.0)


_ATTEMPTS = """
SELECT a.run_id, a.stage_id, a.number, a.status, a.worker_id,
       extract(epoch FROM r.created_at) AS run_created,
       extract(epoch FROM a.queued_at) AS queued,
       extract(epoch FROM a.started_at) AS started,
       (SELECT o.envelope->>'causation_id' IS NULL FROM outbox o
         WHERE o.run_id = a.run_id AND o.event_type = 'attempt.started'
           AND o.envelope->'payload'->>'attempt_id' = a.id::text
         LIMIT 1) AS swept
  FROM stage_attempts a JOIN runs r ON r.id = a.run_id
 WHERE a.run_id = ANY($1::uuid[])
"""
_REGISTERED = "SELECT extract(epoch FROM min(started_at)) FROM workers WHERE pid = $1"
_STATUSES = "SELECT id, status FROM runs WHERE id = ANY($1::uuid[])"
_FIRST_BY_PID = """
SELECT extract(epoch FROM min(a.started_at)) FROM stage_attempts a JOIN workers w ON w.id = a.worker_id
 WHERE w.pid = $1 AND a.started_at >= to_timestamp($2)
"""
_FIRST_QUEUED_AFTER = """
SELECT extract(epoch FROM min(started_at)) FROM stage_attempts WHERE queued_at > to_timestamp($1)
"""
_FIRST_OF_RUNS_AFTER = """
SELECT extract(epoch FROM min(a.started_at)) FROM stage_attempts a JOIN runs r ON r.id = a.run_id
 WHERE r.created_at > to_timestamp($1) AND a.started_at >= to_timestamp($2)
"""


async def _first(p: Platform, what: str, query: str, *args: object) -> float:
    """Poll until `query` gives a time (the first stage start that shows recovery)."""
    deadline = time.monotonic() + RECOVERY_CAP_S
    while True:
        value = await p.fetchval(query, *args)
        if value is not None:
            return float(value)
        if time.monotonic() > deadline:
            raise PlatformError(f"{what}: no stage start within {RECOVERY_CAP_S:.0f} s")
        p.check_alive()
        await asyncio.sleep(0.02)


async def _sleep_until(moment: float) -> None:
    delay = moment - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a case's stream triggered, and what became of it."""

    loaded: OpenLoop
    attempts: list[Attempt]
    audit: Audit

    def starts(self) -> list[float]:
        return [a.started for a in self.attempts if a.started is not None]


async def _finish(p: Platform, load: Stream, killed_workers: Collection[str]) -> Outcome:
    """End the stream, let every run it triggered finish, and audit them."""
    loaded = await load.end()
    ids = [t.run_id for t in loaded.triggered]
    with contextlib.suppress(PlatformError):  # the audit names the runs that did not finish
        await wait_finished(p, ids, timeout_s=FINISH_TIMEOUT_S, poll_s=0.05)
    statuses: dict[uuid.UUID, str] = {r["id"]: r["status"] for r in await p.fetch(_STATUSES, ids)}
    statuses.update({run_id: "missing" for run_id in ids if run_id not in statuses})
    attempts = [
        Attempt(
            run_id=r["run_id"],
            stage_id=r["stage_id"],
            number=int(r["number"]),
            status=r["status"],
            worker_id=r["worker_id"],
            run_created=float(r["run_created"]),
            queued=float(r["queued"]),
            started=None if r["started"] is None else float(r["started"]),
            swept=r["swept"],
        )
        for r in await p.fetch(_ATTEMPTS, ids)
    ]
    return Outcome(loaded, attempts, audit(statuses, attempts, killed_workers))


def _coordinator(p: Platform, offset: int, fault: float, until: float) -> str:
    """What the broker's group coordinator did to this platform's groups from just before the fault
    until `until` (from its log), timed from the fault."""
    text = read_log(offset)
    if text is None:
        return f"broker log: not readable at {BROKER_LOG}"
    events = group_events(broker_lines(text, p.namespace, fault - 0.5, until))
    rebalances = sum(1 for e in events if e.rebalance)
    return f"group coordinator (broker log), {rebalances} rebalance(s): " + describe_events(
        events, fault, f"{p.namespace}."
    )


def _fig(name: str, ms: float | None, ctx: BenchContext, aim: Aim | None) -> list[Figure]:
    if ms is None:
        ctx.note(f"{name}: no such stage start was seen")
        return []
    figure = Figure(name, ms, "ms").relative_to(ctx.references.kafka.p50)
    return [figure.aiming(aim) if aim is not None else figure]


async def _stable(p: Platform) -> None:
    for group in (p.topics.orchestrator_group, p.topics.worker_group("default")):
        await p.wait_group_stable(group)


async def _worker_kill(
    ctx: BenchContext, p: Platform, mode: Mode, budget: Budget
) -> tuple[list[Figure], Audit]:
    victim = p.live("worker")[0]
    killed_id = (await worker_ids(p))[victim.pid]
    offset = log_size()
    ctx.progress(f"recovery ({mode.label}): kill -9 of {victim.name} under {budget.rate:.0f} runs/s")
    async with streaming(p, "one", budget.rate) as load:
        await asyncio.sleep(budget.steady_s)
        fault = time.time()
        victim.kill()
        restarted = p.restart(victim)
        first = await _first(p, "worker kill", _FIRST_BY_PID, restarted.pid, fault)
        await _sleep_until(max(first + budget.settle_s, fault + budget.observe_s))
        out = await _finish(p, load, {killed_id})
    new_id = (await worker_ids(p)).get(restarted.pid)
    mine = first_start(out.attempts, after=fault, where=lambda a: a.worker_id == new_id)
    from_kafka = first_start(
        out.attempts, after=fault, where=lambda a: a.worker_id == new_id and a.swept is False
    )
    gap = longest_gap(out.starts(), fault, load.ended)
    steady = longest_gap(out.starts(), load.started + 1.0, fault)
    after = [a for a in out.attempts if a.started is not None and a.started >= fault]
    others = [a for a in after if a.worker_id not in (new_id, killed_id)]
    # The survivor's own Kafka consumption: a rebalance revokes its partitions until the group is stable.
    survivor = longest_gap(
        [a.started for a in others if a.started is not None and a.swept is False], fault, load.ended
    )
    registered = await p.fetchval(_REGISTERED, restarted.pid)
    up = "never registered" if registered is None else f"registered at +{float(registered) - fault:.1f} s"
    path = "through the Postgres sweep" if mine is not None and mine.swept else "from its Kafka partitions"
    ctx.note(
        f"{mode.label}, worker kill: the restarted process {up}, its first stage came {path}; longest stretch without a stage "
        f"start after the kill {gap.ms:.0f} ms from +{gap.start - fault:.1f} s (steady state before: "
        f"{steady.ms:.0f} ms); the other worker started {len(others)} stages meanwhile, "
        f"{sum(1 for a in others if a.swept)} of them swept from Postgres (its longest pause in stages from its "
        f"own partitions began at +{survivor.start - fault:.1f} s); "
        f"{out.audit.describe()}"
    )
    ctx.note(f"{mode.label}, worker kill: {_coordinator(p, offset, fault, load.ended + 1.0)}")
    name = f"{mode.label}: worker kill -9 →"
    figures = _fig(
        f"{name} restarted worker's 1st stage", ms_after(mine, fault), ctx, Aim.below(AIM_RECOVERY_MS)
    )
    # What membership decides: once the process is up, how soon its own partitions feed it.
    figures += _fig(
        f"{mode.label}: restarted worker up → 1st stage from Kafka",
        None if registered is None else ms_after(from_kafka, float(registered)),
        ctx,
        None,
    )
    figures += _fig(f"{name} longest stage-start gap", gap.ms, ctx, Aim.below(AIM_GAP_MS))
    figures += _fig(f"{name} other worker's longest Kafka pause", survivor.ms, ctx, None)
    return figures, out.audit


async def _orchestrator_kill(
    ctx: BenchContext, p: Platform, mode: Mode, budget: Budget
) -> tuple[list[Figure], Audit]:
    victim = p.live("orchestrator")[0]
    offset = log_size()
    ctx.progress(f"recovery ({mode.label}): kill -9 of the orchestrator under {budget.rate:.0f} runs/s")
    async with streaming(p, "one", budget.rate) as load:
        await asyncio.sleep(budget.steady_s)
        fault = time.time()
        victim.kill()
        p.restart(victim)
        first = await _first(p, "orchestrator kill", _FIRST_QUEUED_AFTER, fault)
        await _sleep_until(max(first + budget.settle_s, fault + budget.observe_s))
        out = await _finish(p, load, ())
    planned = first_start(out.attempts, after=fault, where=lambda a: a.queued > fault)
    gap = longest_gap(out.starts(), fault, load.ended)
    before = sum(
        1 for a in out.attempts if a.started is not None and a.started >= fault and a.queued <= fault
    )
    ctx.note(
        f"{mode.label}, orchestrator kill: {before} stages planned before the kill started after it; "
        f"longest stretch without a stage start after the kill {gap.ms:.0f} ms; {out.audit.describe()}"
    )
    ctx.note(f"{mode.label}, orchestrator kill: {_coordinator(p, offset, fault, load.ended + 1.0)}")
    figures = _fig(
        f"{mode.label}: orchestrator kill -9 → next stage planned",
        ms_after(planned, fault),
        ctx,
        Aim.below(AIM_RECOVERY_MS),
    )
    return figures, out.audit


async def _broker_restart(
    ctx: BenchContext, p: Platform, mode: Mode, budget: Budget
) -> tuple[list[Figure], Audit]:
    offset = log_size()
    ctx.progress(f"recovery ({mode.label}): broker restart (scripts/kafka.sh stop, start) under load")
    async with broker_outage() as broker, streaming(p, "one", budget.rate) as load:
        await asyncio.sleep(budget.steady_s)
        fault = time.time()
        stopped = await broker.stop()
        ready = await broker.start()
        ctx.progress(
            f"recovery ({mode.label}): broker stopped in {stopped - fault:.1f} s, ready {ready - stopped:.1f} s later"
        )
        first = await _first(p, "broker restart", _FIRST_OF_RUNS_AFTER, fault, ready)
        await _sleep_until(max(first + budget.settle_s, ready + budget.settle_s))
        out = await _finish(p, load, ())
    nxt = first_start(out.attempts, after=ready, where=lambda a: a.run_created > fault)
    during = sum(1 for a in out.attempts if a.started is not None and fault <= a.started < ready)
    triggered = sum(1 for t in out.loaded.triggered if fault <= t.sent_at < ready)
    ctx.note(
        f"{mode.label}, broker restart: `kafka.sh stop` took {stopped - fault:.1f} s, `start` {ready - stopped:.1f} s "
        f"(until a metadata request was answered); {triggered} runs triggered (202) meanwhile, "
        f"{during} stages started meanwhile; {out.audit.describe()}"
    )
    ctx.note(f"{mode.label}, broker restart: {_coordinator(p, offset, fault, load.ended + 1.0)}")
    name = f"{mode.label}: broker"
    figures = _fig(f"{name} ready → next stage", ms_after(nxt, ready), ctx, Aim.below(AIM_RECOVERY_MS))
    figures += _fig(f"{name} stop → next stage", ms_after(nxt, fault), ctx, None)
    return figures, out.audit


async def _mode(ctx: BenchContext, mode: Mode, budget: Budget) -> list[Figure]:
    session = {"kafka_session_timeout_s": ctx.settings.kafka_session_timeout_s}
    async with bench_platform(
        ctx.settings, {"one": RECOVERY_ONE}, progress=ctx.progress, kafka_partitions=PARTITIONS
    ) as p:
        await p.start_api()
        p.start_orchestrator(**session, **mode.ids("orchestrator-1"))
        for i in range(1, WORKERS + 1):
            p.start_worker(CONCURRENCY, **session, **mode.ids(f"worker-{i}"))
        ctx.progress(f"recovery ({mode.label}): warming up")
        await warm_up(p)
        figures: list[Figure] = []
        audits: list[Audit] = []
        for case in (_worker_kill, _orchestrator_kill, _broker_restart):
            await _stable(p)
            found, checked = await case(ctx, p, mode, budget)
            figures += found
            audits.append(checked)
        for line in describe_problems(p.problems(), limit=3):
            ctx.note(f"{mode.label}: {line}")
    wrong = sum(sum(a.not_succeeded.values()) + a.lost_elsewhere + a.unexplained for a in audits)
    figures.append(
        Figure(f"{mode.label}: runs lost or retried needlessly", wrong, "runs").aiming(Aim.at_most(0))
    )
    return figures


async def run(ctx: BenchContext) -> list[Figure]:
    budget = Budget.of(ctx)
    ctx.note(
        f"{budget.rate:.0f} one-stage runs/s open-loop; {WORKERS} workers x {CONCURRENCY} slots, {PARTITIONS} "
        f"partitions; session timeout {ctx.settings.kafka_session_timeout_s:.0f} s; each case streams "
        f"{budget.steady_s:.1f} s before its fault and at least {budget.observe_s:.0f} s after it"
    )
    figures: list[Figure] = []
    for mode in MODES:
        figures += await _mode(ctx, mode, budget)
    return figures
