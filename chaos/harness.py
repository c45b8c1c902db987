"""`make chaos`: a mixed workload under a schedule of faults, then the verdict from the database.

One throwaway Comet (bench.platform: fresh database and namespace, real `comet api`,
`orchestrator` and two `worker` processes) on the run's own PostgreSQL and Kafka
(chaos.services). While runs are triggered at a steady pace (parallel DAGs, a matrix, a stage that
fails once and is retried, REST triggers with an Idempotency-Key and signed GitHub pushes, each
request repeated as is until it is acknowledged), faults are injected one after the other, and a
supervisor loop starts again any process that exited, as systemd or Kubernetes would. Then every
acknowledged trigger and delivery must have exactly one run, finished; see chaos.checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import random
import secrets
import signal
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.platform import ADMIN_EMAIL, CometProcess, Platform, bench_platform, with_database
from bench.scenarios.webhooks import FIXTURE, github_push, signed_delivery
from chaos.checks import (
    AttemptSpan,
    HistoryEvent,
    doubly_committed,
    executions,
    heals,
    illegal_transitions,
    lease_overlaps,
    script_overlaps,
    table,
)
from chaos.checks import intake as judge_intake
from chaos.services import Services, own_services
from config.settings import CommonSettings
from db.engine import asyncpg_dsn

PROVIDER_REPO = "comet-chaos/storm"
ON = "on:\n  push: {branches: [main]}\n  manual: true\n"
# Every stage script notes when it starts and ends (`<run> <stage> <attempt> start|end <time>` in
# the marks file): two attempts of one stage whose scripts overlap ran under each other's lease.
_NOTE = (
    'note() { printf \'%s %s %s %s %s\\n\' "$COMET_RUN_ID" "$COMET_STAGE" "$COMET_ATTEMPT" '
    '"$1" "$EPOCHREALTIME" >> @MARKS@; }'
)


def _stage(name: str, script: str, extra: str = "", when: str = "lost_worker") -> str:
    """A stage retried (twice) when its worker is lost, as a team running CI on preemptible
    machines would configure it (a lost attempt otherwise fails its stage)."""
    lines = [_NOTE, "note start", "trap 'note end' EXIT", script]
    body = "".join(f"      {line}\n" for line in lines)
    retry = f"    retry: {{count: 2, when: [{when}]}}\n"
    return f"  {name}:\n    checkout: false\n{retry}{extra}    run: |\n{body}"


# The flaky stage fails its first attempt of each run, then succeeds: a retry under faults.
_FLAKY = 'f="@MARKS@-flaky-$COMET_RUN_ID"; if [ -e "$f" ]; then exit 0; fi; touch "$f"; exit 1'
PIPELINES = {
    "dag": "name: chaos-dag\n"
    + ON
    + "stages:\n"
    + _stage("a", "sleep 0.2")
    + _stage("b", "sleep 0.3")
    + _stage("c", "sleep 0.1")
    + _stage("join", "true", "    needs: [a, b, c]\n"),
    "matrix": "name: chaos-matrix\n"
    + ON
    + "stages:\n"
    + _stage("unit", "sleep 0.2", "    matrix: {py: ['3.11', '3.12', '3.13']}\n")
    + _stage("report", "true", "    needs: [unit]\n"),
    "retry": "name: chaos-retry\n"
    + ON
    + "stages:\n"
    + _stage("flaky", _FLAKY, when="script_failure, lost_worker")
    + _stage("after", "true", "    needs: [flaky]\n"),
}
LEASE_S = 6.0
HEARTBEAT_S = 1.0
GIVE_UP_S = 180.0  # a request not acknowledged within this long is counted as not acknowledged
FINISH_TIMEOUT_S = 300.0  # a probe run must end within this
STALL_S = 120.0  # the final drain gives up after this long without a run ending
FAULT_KINDS = (
    "kill -9 worker",
    "kill -9 orchestrator",
    "kill -9 api",
    "SIGSTOP worker past lease",
    "kafka restart",
    "postgres restart (fast)",
    "postgres restart (immediate)",
    "network latency",
    "network reset",
    "network timeout",
)


@dataclass
class Options:
    runs: int = 300
    rate: float = 1.0  # triggers per second (2 cores: about what they finish)
    faults: int | None = None  # default: one of each kind per ~40 runs, at least one of each
    seed: int | None = None
    webhook_share: float = 0.25
    kinds: tuple[str, ...] = FAULT_KINDS  # the kinds of fault to inject (a subset: to study one)


def fault_schedule(opts: Options, rng: random.Random) -> list[str]:
    """The kinds of fault to inject, in order: `opts.faults` of them (default one per 30 runs,
    at least one of each kind), the kinds taken in turn, then shuffled."""
    count = opts.faults if opts.faults is not None else max(len(opts.kinds), opts.runs // 30)
    kinds = [opts.kinds[i % len(opts.kinds)] for i in range(count)]
    rng.shuffle(kinds)
    return kinds


@dataclass
class Fault:
    kind: str
    injected: float
    lifted: float | None = None
    api_ready: float | None = None  # when /readyz answered 200 after the fault was lifted
    healed: float | None = None  # when a run triggered after the fault was lifted had finished
    note: str = ""


@dataclass
class Ledger:
    """What the clients were told."""

    rest: dict[str, uuid.UUID] = field(default_factory=dict)  # Idempotency-Key -> run id
    webhooks: list[str] = field(default_factory=list)  # acknowledged delivery ids
    given_up: int = 0
    answers: dict[int, int] = field(default_factory=dict)  # status -> count (0: no answer)
    during_pg_outage: dict[int, int] = field(default_factory=dict)
    unavailable_without_retry_after: int = 0  # 503 answers without a Retry-After header
    logins: int = 0  # logins again after the access token expired

    def count(self, status: int, pg_down: bool) -> None:
        self.answers[status] = self.answers.get(status, 0) + 1
        if pg_down:
            self.during_pg_outage[status] = self.during_pg_outage.get(status, 0) + 1


@dataclass
class Storm:
    p: Platform
    services: Services
    opts: Options
    progress: Callable[[str], None]
    rng: random.Random
    secret: bytes
    template: dict[str, Any]
    ledger: Ledger = field(default_factory=Ledger)
    faults: list[Fault] = field(default_factory=list)
    paused: set[int] = field(default_factory=set)
    unplanned_exits: list[str] = field(default_factory=list)
    planned_kills: set[int] = field(default_factory=set)
    pg_down: bool = False
    _login_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _logged_in: float = 0.0

    # -- the supervisor --------------------------------------------------------------------------

    async def supervise(self) -> None:
        while True:
            for proc in list(self.p.processes):
                if proc.stopping or proc.alive:
                    continue
                proc.stopping = True  # replaced below
                if proc.pid not in self.planned_kills:
                    self.unplanned_exits.append(f"{proc.name} exited with {proc.popen.returncode}")
                self.p.restart(proc)
            await asyncio.sleep(0.2)

    # -- the workload ----------------------------------------------------------------------------

    async def _login(self) -> None:
        """A fresh access token on the client, once for all the requests that found theirs expired."""
        assert self.p.client is not None
        async with self._login_lock:
            if time.monotonic() - self._logged_in < 5.0:
                return  # another request just did
            with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                answer = await self.p.client.post(
                    "/api/v1/auth/login",
                    json={"email": ADMIN_EMAIL, "password": self.p.password},
                    timeout=15.0,
                )
                if answer.status_code == 200:
                    self.p.client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
                    self._logged_in = time.monotonic()
                    self.ledger.logins += 1

    async def _send(
        self, make: Callable[[], Any], ok: Callable[[httpx.Response], bool]
    ) -> httpx.Response | None:
        """Send until acknowledged (the same request each time) or GIVE_UP_S has passed."""
        deadline = time.monotonic() + GIVE_UP_S
        while time.monotonic() < deadline:
            pg_down = self.pg_down
            try:
                response: httpx.Response = await make()
            except httpx.HTTPError:
                self.ledger.count(0, pg_down)
                await asyncio.sleep(0.5)
                continue
            self.ledger.count(response.status_code, pg_down)
            if response.status_code == 401:  # the access token expired (a long storm): log in again
                await self._login()
                await asyncio.sleep(0.2)
                continue
            if response.status_code == 503 and "Retry-After" not in response.headers:
                self.ledger.unavailable_without_retry_after += 1
            if ok(response):
                return response
            delay = float(response.headers.get("Retry-After", "1") or 1)
            await asyncio.sleep(min(max(delay, 0.2), 3.0))
        self.ledger.given_up += 1
        return None

    async def trigger_rest(self, pipeline: str) -> uuid.UUID | None:
        assert self.p.client is not None
        client = self.p.client
        key = str(uuid.uuid4())
        body = {"ref": "refs/heads/main", "sha": self.p.shas[pipeline]}
        url = f"/api/v1/projects/{self.p.project_id}/runs"
        response = await self._send(
            lambda: client.post(url, json=body, headers={"Idempotency-Key": key}, timeout=15.0),
            lambda r: r.status_code == 202,
        )
        if response is None:
            return None
        run_id = uuid.UUID(response.json()["run_id"])
        self.ledger.rest[key] = run_id
        return run_id

    async def trigger_webhook(self, pipeline: str) -> None:
        assert self.p.client is not None
        client = self.p.client
        payload = github_push(
            self.template,
            full_name=PROVIDER_REPO,
            ref="refs/heads/main",
            sha=self.p.shas[pipeline],
            before=secrets.token_hex(20),
        )
        delivery = signed_delivery(payload, self.secret, str(uuid.uuid4()))
        response = await self._send(
            lambda: client.post(
                "/api/v1/webhooks/github", content=delivery.body, headers=delivery.headers, timeout=15.0
            ),
            lambda r: 200 <= r.status_code < 300,
        )
        if response is not None:
            self.ledger.webhooks.append(delivery.delivery_id)

    async def _rest(self, pipeline: str) -> None:
        await self.trigger_rest(pipeline)

    async def probe(self) -> float | None:
        """Trigger a run of the DAG and wait for it to finish (it counts as acknowledged like any
        other): when it did, or None when it did not within FINISH_TIMEOUT_S."""
        assert self.p.client is not None
        run_id = await self.trigger_rest("dag")
        if run_id is None:
            return None
        deadline = time.monotonic() + FINISH_TIMEOUT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                answer = await self.p.client.get(f"/api/v1/runs/{run_id}", timeout=5.0)
                if answer.status_code == 200 and answer.json()["status"] in (
                    "succeeded",
                    "failed",
                    "cancelled",
                ):
                    return time.time()
            await asyncio.sleep(0.2)
        return None

    async def workload(self) -> None:
        tasks: list[asyncio.Task[None]] = []
        start = time.monotonic()
        names = sorted(PIPELINES)
        for i in range(self.opts.runs):
            due = start + i / self.opts.rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            pipeline = names[i % len(names)]
            if self.rng.random() < self.opts.webhook_share:
                tasks.append(asyncio.create_task(self.trigger_webhook(pipeline)))
            else:
                tasks.append(asyncio.create_task(self._rest(pipeline)))
            if (i + 1) % 50 == 0:
                self.progress(f"workload: {i + 1}/{self.opts.runs} triggered")
        await asyncio.gather(*tasks)

    # -- the faults ------------------------------------------------------------------------------

    async def _api_ready(self) -> float | None:
        assert self.p.client is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await self.p.client.get("/readyz", timeout=2.0)).status_code == 200:
                    return time.time()
            await asyncio.sleep(0.1)
        return None

    def _kill(self, prefix: str) -> CometProcess:
        victim = self.rng.choice(self.p.live(prefix))
        self.planned_kills.add(victim.pid)
        victim.popen.kill()
        return victim

    async def inject(self, kind: str) -> Fault:
        fault = Fault(kind, time.time())
        if kind.startswith("kill -9"):
            victim = self._kill(kind.rsplit(" ", 1)[1])
            fault.note = victim.name
            await asyncio.sleep(0.5)  # the supervisor's restart
        elif kind == "SIGSTOP worker past lease":
            victim = self.rng.choice(self.p.live("worker"))
            self.paused.add(victim.pid)
            os.kill(victim.pid, signal.SIGSTOP)
            await asyncio.sleep(LEASE_S + 3.0)
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim.pid, signal.SIGCONT)
            self.paused.discard(victim.pid)
            fault.note = victim.name
        elif kind == "kafka restart":
            await self.services.script("kafka", "stop")
            await self.services.script("kafka", "start")
        elif kind.startswith("postgres restart"):
            mode = "immediate" if "immediate" in kind else "fast"
            self.pg_down = True
            try:
                await self.services.script("postgres", "stop", mode)
                await asyncio.sleep(2.0)
                await self.services.script("postgres", "start")
            finally:
                self.pg_down = False
        else:
            toxic = kind.rsplit(" ", 1)[1]
            target = self.rng.choice(["kafka", "postgres"])
            fault.kind = f"{kind} ({target})"
            fault.note = target
            proxies = self.services.proxies
            if not proxies.supports(toxic):
                fault.note += f" (not possible with {proxies.kind}: skipped)"
                fault.lifted = time.time()
                return fault
            await proxies.fault(target, toxic)
            await asyncio.sleep(6.0 if toxic != "reset" else 3.0)
            await proxies.heal(target)
        fault.lifted = time.time()
        fault.api_ready = await self._api_ready()
        fault.healed = await self.probe()
        return fault

    def schedule(self) -> list[str]:
        return fault_schedule(self.opts, self.rng)

    async def inflict(self) -> None:
        kinds = self.schedule()
        span = self.opts.runs / self.opts.rate
        # Faults spread over the workload, the first after a calm start, the last before it ends.
        lead = min(10.0, span * 0.1)
        gap = max(1.0, (span * 0.85 - lead) / max(1, len(kinds)))
        await asyncio.sleep(lead)
        for n, kind in enumerate(kinds, 1):
            began = time.monotonic()
            self.progress(f"fault {n}/{len(kinds)}: {kind}")
            self.faults.append(await self.inject(kind))
            await asyncio.sleep(max(0.5, gap - (time.monotonic() - began)))


# -- the verdict ---------------------------------------------------------------------------------

_HISTORY = """
SELECT id, event_type, envelope->'payload' AS payload FROM outbox
 WHERE event_type = ANY($1::text[]) ORDER BY id
"""
_ATTEMPTS = """
SELECT stage_id, id, worker_id, extract(epoch FROM started_at) AS started,
       extract(epoch FROM finished_at) AS finished FROM stage_attempts
"""


def history_of(rows: Sequence[Mapping[str, Any]]) -> tuple[list[HistoryEvent], list[uuid.UUID]]:
    """The status changes in outbox rows (`event_type`, `payload`), and the attempt of each result."""
    events: list[HistoryEvent] = []
    finished: list[uuid.UUID] = []
    for row in rows:
        payload = row["payload"]
        payload = json.loads(payload) if isinstance(payload, str) else payload
        run_id = uuid.UUID(payload["run_id"])
        kind = row["event_type"]
        if kind == "run.status_changed":
            events.append(HistoryEvent(run_id, "run", payload.get("previous"), payload["status"]))
        elif kind == "stage.status_changed":
            events.append(
                HistoryEvent(run_id, f"stage {payload['stage']}", payload.get("previous"), payload["status"])
            )
        else:
            attempt = f"attempt {payload['attempt_id']}"
            if kind == "attempt.dispatched":
                events.append(HistoryEvent(run_id, attempt, None, "queued"))
            elif kind == "attempt.started":
                events.append(HistoryEvent(run_id, attempt, None, "running"))
            else:
                finished.append(uuid.UUID(payload["attempt_id"]))
                events.append(HistoryEvent(run_id, attempt, None, payload["status"]))
    return events, finished


async def _wait_terminal(
    db: asyncpg.Connection, ids: list[uuid.UUID], progress: Callable[[str], None]
) -> None:
    """Until every run has ended and every accepted delivery has its run, as long as runs keep
    ending: at most STALL_S without one more run ended."""
    last, moved = -1, time.monotonic()
    while time.monotonic() - moved < STALL_S:
        open_ = await db.fetchval(
            "SELECT count(*) FROM runs WHERE status NOT IN ('succeeded','failed','cancelled')"
        )
        pending = await db.fetchval(
            "SELECT count(*) FROM webhook_deliveries WHERE outcome = 'accepted' AND run_id IS NULL"
        )
        known = await db.fetchval("SELECT count(*) FROM runs WHERE id = ANY($1::uuid[])", ids)
        if open_ == 0 and pending == 0 and known == len(ids):
            return
        ended = await db.fetchval(
            "SELECT count(*) FROM runs WHERE status IN ('succeeded','failed','cancelled')"
        )
        if ended != last:
            last, moved = ended, time.monotonic()
            progress(f"draining: {open_} runs still open, {pending} deliveries without their run")
        await asyncio.sleep(2.0)
    progress(f"no run ended for {STALL_S:.0f} s; judging as they are")


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _since(moment: float | None, origin: float | None) -> str:
    return "never" if moment is None or origin is None else f"{moment - origin:.1f} s"


def _describe(fault: Fault, began: float) -> str:
    note = f" [{fault.note}]" if fault.note else ""
    return (
        f"  +{fault.injected - began:.0f} s {fault.kind}{note}: fault {_since(fault.lifted, fault.injected)}; "
        f"API ready {_since(fault.api_ready, fault.lifted)}, probe finished {_since(fault.healed, fault.lifted)}"
    )


@dataclass
class Verdict:
    text: str
    ok: bool


def _ledger_lines(storm: Storm, began: float) -> list[str]:
    """What the clients were answered, and each fault's times."""
    lines: list[str] = []
    answers = ", ".join(f"{k or 'no answer'}: {v}" for k, v in sorted(storm.ledger.answers.items()))
    lines.append(f"API answers: {answers}")
    during = ", ".join(f"{k or 'no answer'}: {v}" for k, v in sorted(storm.ledger.during_pg_outage.items()))
    lines.append(f"API answers while Postgres was down: {during or 'none sent'}")
    if storm.ledger.unavailable_without_retry_after:
        lines.append(f"503 answers WITHOUT Retry-After: {storm.ledger.unavailable_without_retry_after}")
    lines.append(
        "faults (at: seconds after the start; fault: injected -> lifted; then: lifted -> API ready, probe run finished):"
    )
    lines.extend(_describe(fault, began) for fault in storm.faults)
    if storm.unplanned_exits:
        lines.append(
            f"processes that exited on their own (restarted): {'; '.join(storm.unplanned_exits[:10])}"
        )
    return lines


async def judge(storm: Storm, database_url: str, began: float) -> Verdict:
    db = await asyncpg.connect(asyncpg_dsn(database_url), timeout=15)
    try:
        await _wait_terminal(db, list(storm.ledger.rest.values()), storm.progress)
        statuses = {r["id"]: r["status"] for r in await db.fetch("SELECT id, status FROM runs")}
        failed_reasons = [
            f"{r['pipeline_name']}: {r['failure_reason']}"
            for r in await db.fetch(
                "SELECT pipeline_name, failure_reason FROM runs WHERE status = 'failed' ORDER BY created_at"
            )
        ]
        acknowledged: dict[str, list[uuid.UUID]] = {}
        for key, run_id in storm.ledger.rest.items():
            acknowledged[f"rest {key}"] = [run_id] if run_id in statuses else []
        by_delivery: dict[str, list[uuid.UUID]] = {}
        for r in await db.fetch(
            "SELECT id, trigger->>'delivery_id' AS d FROM runs WHERE trigger ? 'delivery_id'"
        ):
            by_delivery.setdefault(r["d"], []).append(r["id"])
        for delivery in storm.ledger.webhooks:
            acknowledged[f"webhook {delivery}"] = by_delivery.get(delivery, [])
        result = judge_intake(acknowledged, statuses)
        claimed = {run for runs in acknowledged.values() for run in runs}
        extra = len(set(statuses) - claimed)  # runs nobody was told about
        kinds = [
            "run.status_changed",
            "stage.status_changed",
            "attempt.dispatched",
            "attempt.started",
            "attempt.finished",
        ]
        rows = [dict(r) for r in await db.fetch(_HISTORY, kinds)]
        history, finished = history_of(rows)
        illegal = illegal_transitions(history)
        doubles = doubly_committed(finished)
        spans = [
            AttemptSpan(
                r["stage_id"],
                r["id"],
                r["worker_id"],
                None if r["started"] is None else float(r["started"]),
                None if r["finished"] is None else float(r["finished"]),
            )
            for r in await db.fetch(_ATTEMPTS)
        ]
        overlaps = lease_overlaps(spans)
        marks = await asyncio.to_thread(_read, storm.p.marks)
        scripts = executions(marks)
        overlaps += script_overlaps(scripts)
    finally:
        await db.close()
    healed = [
        (f.kind, None if f.healed is None else f.healed - f.injected)
        for f in storm.faults
        if "skipped" not in f.note
    ]
    if (unattributed := max(0, extra - storm.ledger.given_up)) > 0:
        # More runs than requests left unanswered: some request made two.
        nobody = [
            f"a run nobody was acknowledged for ({i + 1} of {unattributed})" for i in range(unattributed)
        ]
        result = dataclasses.replace(result, duplicated=[*result.duplicated, *nobody])
    lines = [table(result, len(illegal), len(doubles), len(overlaps), heals(healed))]
    lines.append("")
    lines.append(
        f"runs: {len(statuses)} in the database; {extra} not acknowledged to anyone "
        f"({storm.ledger.given_up} requests given up after {GIVE_UP_S:.0f} s; "
        f"{storm.ledger.logins} new access tokens after one expired)"
    )
    by_status: dict[str, int] = {}
    for status in statuses.values():
        by_status[status] = by_status.get(status, 0) + 1
    lines.append("runs by status: " + ", ".join(f"{k} {v}" for k, v in sorted(by_status.items())))
    lines.extend(f"  failed: {reason}" for reason in failed_reasons[:5])
    lines.extend(_ledger_lines(storm, began))
    for what, found in (
        ("lost", result.lost),
        ("duplicated", result.duplicated),
        ("not finished", result.not_terminal),
        ("illegal", illegal),
        ("two results", [str(d) for d in doubles]),
        ("lease", overlaps),
    ):
        lines.extend(f"  {what}: {item}" for item in found[:5])
    server_errors = sum(v for k, v in storm.ledger.answers.items() if k >= 500 and k != 503)
    unended = sum(1 for e in scripts if e.end is None)
    lines.append(f"stage scripts: {len(scripts)} ran ({unended} never noted their end: killed)")
    lines.append(f"proxy: {storm.services.proxies.kind}; took {time.time() - began:.0f} s")
    ok = not result.lost and not result.duplicated and not doubles
    ok = ok and not illegal and not overlaps and not result.not_terminal and not server_errors
    ok = ok and not storm.ledger.unavailable_without_retry_after
    lines.append("VERDICT: " + ("OK" if ok else "FAILED"))
    return Verdict("\n".join(lines), ok)


async def run(opts: Options, progress: Callable[[str], None]) -> Verdict:
    began = time.time()
    rng = random.Random(opts.seed)  # noqa: S311 - a fault schedule, not a secret
    async with own_services(progress) as services:
        settings = CommonSettings(
            database_url=services.database_url, kafka_bootstrap_servers=services.kafka_bootstrap
        )
        pipelines = dict(PIPELINES)
        async with bench_platform(settings, pipelines, progress=progress) as p:
            p.common["database_url"] = with_database(
                services.proxied_database_url, p.database_url.rpartition("/")[2]
            )
            p.common.update(lease_s=LEASE_S, heartbeat_s=HEARTBEAT_S, kafka_session_timeout_s=6)
            secret = (await p.enable_webhooks("github", PROVIDER_REPO)).encode()
            await p.start_api()
            p.start_orchestrator()
            p.start_worker(4, instance_id="chaos-worker-1")
            p.start_worker(4, instance_id="chaos-worker-2")
            template = json.loads(await asyncio.to_thread(Path(FIXTURE).read_text))
            storm = Storm(p, services, opts, progress, rng, secret, template)
            supervisor = asyncio.create_task(storm.supervise())
            try:
                await asyncio.gather(storm.workload(), storm.inflict())
                progress("workload sent; waiting for every run to finish")
                verdict = await judge(storm, p.database_url, began)
            finally:
                supervisor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await supervisor
            for pid in list(storm.paused):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
    return verdict
