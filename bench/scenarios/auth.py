"""Authentication: password logins/s (Argon2id) and authenticated requests/s (JWT, API token)

One `comet api` process on a fresh database with its admin user; closed-loop loads (each client
sends its next request when the previous one is answered), every one bounded in time and count:

1. the reference: one Argon2id verification of the admin's hash (the parameters `comet` uses) in
   the bench process, one at a time, before the API starts;
2. `POST /api/v1/auth/login` with the right password, from 1 client, then from 4: each login
   verifies the Argon2id hash in a thread, then writes the session, the last-login time and an
   audit row in one transaction;
3. `GET /api/v1/users/me` from 16 clients, with the admin's access JWT (signature check, then one
   query: the user, if its session is still live), then with a personal API token of scope
   `read` (`POST /api/v1/tokens`; one query by the token's SHA-256, plus a `last_used_at` write
   at most once a minute);
4. `GET /healthz` from 16 clients: the HTTP stack alone (no authentication, no database).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from api.auth.passwords import HASHER, hash_password, verify_password
from bench.machine import CpuLedger, by_role
from bench.platform import (
    ADMIN_EMAIL,
    CometProcess,
    Platform,
    PlatformError,
    bench_platform,
    describe_problems,
)
from bench.scenarios import BenchContext
from bench.scenarios._http import ClientPool, Load, Send, closed_loop
from bench.scenarios._runs import ONE_STAGE
from bench.stats import Figure, summarize

OK = 200
LOGIN_CLIENTS = 4
REQUEST_CLIENTS = 16


@dataclass(frozen=True, slots=True)
class Budget:
    """Seconds (and at most how many requests) per load."""

    argon2_samples: int
    login_s: float
    request_s: float

    @classmethod
    def of(cls, ctx: BenchContext) -> Budget:
        return cls(10, 2.0, 2.0) if ctx.quick else cls(30, 5.0, 5.0)


@dataclass(frozen=True, slots=True)
class Measured:
    load: Load
    cpu: dict[str, float]
    wall_s: float
    minor_faults: int | None = None  # the API process's (all its threads), during the load


def minor_faults(stat_text: str) -> int:
    """`minflt` (field 10) of a `/proc/<pid>/stat` text: the process's minor page faults, all its
    threads included."""
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return int(stat_text.rpartition(")")[2].split()[7])


def _faults(pid: int) -> int | None:
    try:
        return minor_faults(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def describe_measured(m: Measured, status: int, cpus: int) -> str:
    """`120/s, p50 8.1 ms, p99 20.3 ms; sent …; CPU per request: api 5.10 ms, …; machine 97% busy`."""
    load = m.load
    latency = load.latency(status)
    timing = f"no {status}" if latency is None else f"p50 {latency.p50:.1f} ms, p99 {latency.p99:.1f} ms"
    text = f"{load.throughput(status):.1f}/s, {timing}; {load.describe(status)}"
    answered = len(load.with_status(status))
    if answered and m.cpu:
        ours = {k: v for k, v in m.cpu.items() if k != "machine"}
        text += "; CPU per request: " + ", ".join(
            f"{k} {v * 1000 / answered:.2f} ms" for k, v in ours.items()
        )
        if "machine" in m.cpu:
            rest = max(0.0, m.cpu["machine"] - sum(ours.values()))  # ticks of 10 ms: never below 0
            kafka = "" if "kafka" in m.cpu else " (Kafka included)"
            text += f", rest of the machine{kafka} {rest * 1000 / answered:.2f} ms"
            if m.wall_s > 0:
                text += f"; machine {m.cpu['machine'] / (m.wall_s * cpus) * 100:.0f}% busy of {cpus} CPUs"
    return text


async def run(ctx: BenchContext) -> list[Figure]:
    budget = Budget.of(ctx)
    async with bench_platform(ctx.settings, {"one": ONE_STAGE}, progress=ctx.progress) as p:
        argon2 = _argon2_reference(ctx, budget.argon2_samples)
        api = await p.start_api()
        assert p.api_url is not None
        figures = [argon2.p50_figure]
        figures += await _logins(ctx, p, api, argon2, budget)
        assert p.client is not None
        jwt = p.client.headers["Authorization"]  # the admin's access token, from start_api's login
        figures += await _requests(ctx, p, api, "JWT", "/api/v1/users/me", {"Authorization": jwt}, budget)
        token = await _api_token(p)
        figures += await _requests(
            ctx, p, api, "API token", "/api/v1/users/me", {"Authorization": f"Bearer {token}"}, budget
        )
        figures += await _requests(ctx, p, api, "no auth", "/healthz", {}, budget)
        ctx.note(
            "API rate limits and the failed-login throttle are off in the bench platform "
            "(COMET_RATE_LIMITS_ENABLED=false); with them on, the defaults would refuse most of this "
            "load (auth 30/minute)"
        )
        for line in describe_problems(p.problems()):
            ctx.note(line)
    return figures


@dataclass(frozen=True, slots=True)
class Argon2:
    p50_ms: float
    mean_ms: float

    @property
    def p50_figure(self) -> Figure:
        return Figure("Argon2id verify in the bench process p50", self.p50_ms, "ms")

    @property
    def rate_figure(self) -> Figure:
        return Figure("Argon2id verify sequential rate", 1000.0 / self.mean_ms, "/s")


def _argon2_reference(ctx: BenchContext, samples: int) -> Argon2:
    ctx.progress(f"auth: {samples} Argon2id verifications in the bench process")
    password = "bench-argon2-reference-password"
    hashed = hash_password(password)
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        if not verify_password(hashed, password):
            raise PlatformError("Argon2id verification of a fresh hash failed")
        times.append((time.perf_counter() - started) * 1000.0)
    summary = summarize(times)
    ctx.note(
        f"Argon2id: time_cost={HASHER.time_cost}, memory_cost={HASHER.memory_cost} KiB, "
        f"parallelism={HASHER.parallelism}; in the bench process, one at a time, API idle: "
        f"p50 {summary.p50:.1f} ms, p99 {summary.p99:.1f} ms over {samples}"
    )
    return Argon2(summary.p50, summary.mean)


async def _ledger(p: Platform, api: CometProcess) -> CpuLedger:
    pids = {"api": api.pid, **{f"api/{pid}": pid for pid in api.descendants()}}
    return CpuLedger({**pids, **await p.service_pids()})


async def _measure(
    p: Platform, api: CometProcess, send: Send, clients: int, seconds: float, most: int
) -> Measured:
    ledger = await _ledger(p, api)
    faults = _faults(api.pid)
    started = time.perf_counter()
    load = await closed_loop(send, clients, seconds, max_requests=most)
    wall = time.perf_counter() - started
    p.check_alive()
    grouped = by_role(ledger.spent(await p.service_pids()))
    faults_after = _faults(api.pid)
    faulted = None if faults is None or faults_after is None else faults_after - faults
    return Measured(load, grouped, wall, faulted)


async def _logins(
    ctx: BenchContext, p: Platform, api: CometProcess, argon2: Argon2, budget: Budget
) -> list[Figure]:
    assert p.api_url is not None
    body = {"email": ADMIN_EMAIL, "password": p.password}
    figures: list[Figure] = []
    for clients in (1, LOGIN_CLIENTS):
        ctx.progress(f"auth: logins from {clients} client(s) for {budget.login_s:g} s")
        pool = ClientPool(p.api_url, clients, timeout_s=30.0)
        try:
            await pool.touch()

            async def send(_: int, pool: ClientPool = pool) -> int:
                async with pool.client() as client:
                    return (await client.post("/api/v1/auth/login", json=body)).status_code

            m = await _measure(p, api, send, clients, budget.login_s, 2_000)
        finally:
            await pool.aclose()
        logins = len(m.load.with_status(OK))
        faults = (
            ""
            if m.minor_faults is None or not logins
            else (
                f"; the API took {m.minor_faults / logins:,.0f} minor page faults per login (its 19 MiB Argon2id "
                f"block is {HASHER.memory_cost // 4:,} pages of 4 KiB)"
            )
        )
        ctx.note(f"login, {clients} client(s): " + describe_measured(m, OK, os.cpu_count() or 1) + faults)
        latency = m.load.latency(OK)
        name = f"POST /auth/login, {clients} client{'s' if clients > 1 else ''}"
        figures.append(
            Figure(f"{name}: logins/s", m.load.throughput(OK), "/s").relative_to(argon2.rate_figure)
        )
        if latency is not None:
            figures += [
                Figure(f"{name}: p50", latency.p50, "ms").relative_to(argon2.p50_figure),
                Figure(f"{name}: p99", latency.p99, "ms").relative_to(argon2.p50_figure),
            ]
    return figures


async def _api_token(p: Platform) -> str:
    assert p.client is not None
    response = await p.client.post("/api/v1/tokens", json={"name": "bench", "scopes": ["read"]})
    if response.status_code != 201:
        raise PlatformError(f"POST /api/v1/tokens answered {response.status_code}: {response.text[:300]}")
    return str(response.json()["token"])


async def _requests(
    ctx: BenchContext,
    p: Platform,
    api: CometProcess,
    credential: str,
    path: str,
    headers: dict[str, str],
    budget: Budget,
) -> list[Figure]:
    assert p.api_url is not None
    ctx.progress(f"auth: GET {path} ({credential}) from {REQUEST_CLIENTS} clients for {budget.request_s:g} s")
    pool = ClientPool(p.api_url, REQUEST_CLIENTS, headers=headers)
    try:
        await pool.touch()

        async def send(_: int) -> int:
            async with pool.client() as client:
                return (await client.get(path)).status_code

        m = await _measure(p, api, send, REQUEST_CLIENTS, budget.request_s, 100_000)
    finally:
        await pool.aclose()
    ctx.note(
        f"GET {path} ({credential}), {REQUEST_CLIENTS} clients: "
        + describe_measured(m, OK, os.cpu_count() or 1)
    )
    pg = ctx.references.postgres
    name = f"GET {path.removeprefix('/api/v1')} ({credential}), {REQUEST_CLIENTS} clients"
    latency = m.load.latency(OK)
    figures = [Figure(f"{name}: requests/s", m.load.throughput(OK), "/s").relative_to(pg.rate)]
    if latency is not None:
        figures += [
            Figure(f"{name}: p50", latency.p50, "ms").relative_to(pg.p50),
            Figure(f"{name}: p99", latency.p99, "ms").relative_to(pg.p50),
        ]
    return figures
