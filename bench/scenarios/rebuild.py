"""Rebuild: events/s applied by `comet replay rebuild` from an event history into an empty database

Two fresh, migrated databases (no Comet process started). The source's history is written
directly as outbox rows, in the shapes and proportions the live processes write them: per run,
`run.requested`, the `run.changed` events of its planning and of each decision (the planned
stages as whole rows, the attempts queued, stage and run columns), `attempt.dispatched`,
`attempt.started` and `attempt.finished` (with test counts) for each of its 4 stages (two of them
in parallel, one retried once), and the `stage.status_changed` / `run.status_changed` events (which
change no row). Then `db.rebuild.rebuild` — what the command runs — rebuilds the target, timed
from its start to its return (target checks, configuration copy, reading, folding, writing,
committing each batch with its progress row), and `db.verify.compare` checks the result.
"""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from bench.scenarios import BenchContext
from bench.stats import Aim, Figure
from config.settings import CommonSettings
from db.engine import asyncpg_dsn
from db.migrations import upgrade
from db.rebuild import rebuild
from events.envelope import new_envelope
from schemas.events import (
    AttemptDispatched,
    AttemptFinished,
    AttemptStarted,
    EventPayload,
    RunChanged,
    RunRequested,
    RunStatusChanged,
    StageStatusChanged,
    TestCounts,
)
from schemas.ids import uuid7

AIM_EVENTS_PER_S = 50_000.0
STAGES = (("lint", ()), ("unit", ()), ("flaky", ()), ("build", ("lint", "unit", "flaky")))


def _run_history(project_id: uuid.UUID, number: int, start: datetime) -> list[EventPayload]:
    """One run's events as the API, orchestrator and workers write them."""
    run_id = uuid7()
    t = start
    events: list[EventPayload] = [
        RunRequested(run_id=run_id, project_id=project_id, number=number, ref="refs/heads/main")
    ]
    ids = {name: uuid7() for name, _ in STAGES}

    def tick() -> datetime:
        nonlocal t
        t += timedelta(milliseconds=7)
        return t

    def attempt_row(name: str, number: int, at: datetime) -> dict[str, Any]:
        return {
            "id": uuid7(),
            "run_id": run_id,
            "stage_id": ids[name],
            "number": number,
            "pool": "default",
            "status": "queued",
            "dispatch_at": None,
            "queued_at": at,
        }

    def work(name: str, row: dict[str, Any], status: str) -> list[EventPayload]:
        begun, ended = tick(), tick()
        common = {"run_id": run_id, "stage_id": ids[name], "attempt_id": row["id"], "stage": name}
        token = secrets.randbits(40)
        return [
            AttemptDispatched(**common, number=row["number"], pool="default"),
            AttemptStarted(
                **common, number=row["number"], worker_id="w1", fencing_token=token, started_at=begun
            ),
            AttemptFinished(
                **common,
                number=row["number"],
                status=status,
                exit_code=0 if status == "succeeded" else 1,
                failure_kind=None if status == "succeeded" else "script_failure",
                worker_id="w1",
                started_at=begun,
                finished_at=ended,
                tests=TestCounts(total=20, passed=20, duration_s=1.5) if name == "unit" else None,
                fencing_token=token,
            ),
        ]

    at = tick()
    first = [attempt_row(name, 1, at) for name, needs in STAGES if not needs]
    events.append(
        RunChanged(
            run_id=run_id,
            at=at,
            run={
                "status": "queued",
                "sha": "a" * 40,
                "pipeline_name": "pipeline",
                "queued_at": at,
                "updated_at": at,
            },
            new_stages=[
                {
                    "id": ids[name],
                    "run_id": run_id,
                    "name": name,
                    "base_name": name,
                    "position": i,
                    "matrix": {},
                    "needs": list(needs),
                    "pool": "default",
                    "spec": {"script": "true", "retry": {"count": 1}},
                    "status": "pending" if needs else "queued",
                    "attempt": 0 if needs else 1,
                    "exit_code": None,
                    "failure_kind": None,
                    "failure_reason": None,
                    "note": None,
                    "queued_at": None if needs else at,
                    "started_at": None,
                    "finished_at": None,
                }
                for i, (name, needs) in enumerate(STAGES)
            ],
            new_attempts=first,
        )
    )
    events += [
        RunStatusChanged(run_id=run_id, project_id=project_id, status="queued", previous="requested", at=at)
    ]
    for row in first:
        name = next(n for n, i in ids.items() if i == row["stage_id"])
        events += [StageStatusChanged(run_id=run_id, stage=name, status="queued", attempt=1, at=at)]
        events += work(name, row, "failed" if name == "flaky" else "succeeded")
        if name == "flaky":
            continue
        at = tick()
        changed: dict[str, dict[str, Any]] = {
            str(ids[name]): {"status": "succeeded", "exit_code": 0, "started_at": at, "finished_at": at}
        }
        events.append(RunChanged(run_id=run_id, at=at, stages=changed))
        events.append(StageStatusChanged(run_id=run_id, stage=name, status="succeeded", attempt=1, at=at))
    retry = attempt_row("flaky", 2, tick())
    again = {"status": "queued", "attempt": 2, "exit_code": 1, "queued_at": retry["queued_at"]}
    events.append(
        RunChanged(
            run_id=run_id, at=retry["queued_at"], stages={str(ids["flaky"]): again}, new_attempts=[retry]
        )
    )
    events += work("flaky", retry, "succeeded")
    at = tick()
    done = {"status": "succeeded", "exit_code": 0, "finished_at": at}
    events.append(RunChanged(run_id=run_id, at=at, stages={str(ids["flaky"]): done}))
    build = attempt_row("build", 1, tick())
    events.append(
        RunChanged(
            run_id=run_id,
            at=build["queued_at"],
            run={"status": "running", "started_at": build["queued_at"]},
            stages={str(ids["build"]): {"status": "queued", "attempt": 1, "queued_at": build["queued_at"]}},
            new_attempts=[build],
        )
    )
    events += work("build", build, "succeeded")
    end = tick()
    events.append(
        RunChanged(
            run_id=run_id,
            at=end,
            run={"status": "succeeded", "finished_at": end, "updated_at": end},
            stages={str(ids["build"]): {"status": "succeeded", "exit_code": 0, "finished_at": end}},
        )
    )
    events.append(
        RunStatusChanged(run_id=run_id, project_id=project_id, status="succeeded", previous="running", at=end)
    )
    return events


async def _fill_source(db: asyncpg.Connection, target_events: int) -> int:
    """Write runs' histories into the source's outbox (COPY) until `target_events`; returns how many."""
    project_id, user_id = uuid7(), uuid7()
    await db.execute("INSERT INTO users (id, email) VALUES ($1, 'bench@example.com')", user_id)
    await db.execute(
        "INSERT INTO projects (id, name, repo_url, provider, default_branch, created_by) "
        "VALUES ($1, 'bench', 'file:///nowhere', 'local', 'main', $2)",
        project_id,
        user_id,
    )
    written, number = 0, 0
    start = datetime(2026, 11, 1, tzinfo=UTC)
    while written < target_events:
        records = []
        for _ in range(200):
            number += 1
            for payload in _run_history(project_id, number, start + timedelta(seconds=number)):
                run_id = getattr(payload, "run_id", None)
                envelope = new_envelope(
                    payload, key=str(run_id), occurred_at=start + timedelta(seconds=number)
                )
                records.append(
                    (
                        envelope.event_id,
                        envelope.type,
                        "bench.events",
                        envelope.key,
                        orjson.dumps(envelope.model_dump(mode="json")).decode(),
                        run_id,
                    )
                )
        await db.copy_records_to_table(
            "outbox",
            records=records,
            columns=["event_id", "event_type", "topic", "key", "envelope", "run_id"],
        )
        written += len(records)
    return written


async def _database(settings: CommonSettings, admin: asyncpg.Connection, name: str) -> str:
    import asyncio

    await admin.execute(f'CREATE DATABASE "{name}"')
    url = settings.database_url.rsplit("/", 1)[0] + "/" + name
    await asyncio.to_thread(upgrade, url)
    return url


async def run(ctx: BenchContext) -> list[Figure]:
    target_events = 100_000 if ctx.quick else 500_000
    admin = await asyncpg.connect(asyncpg_dsn(ctx.settings.database_url))
    names = [f"comet_bench_src_{secrets.token_hex(4)}", f"comet_bench_dst_{secrets.token_hex(4)}"]
    try:
        source = await _database(ctx.settings, admin, names[0])
        target = await _database(ctx.settings, admin, names[1])
        db = await asyncpg.connect(asyncpg_dsn(source))
        try:
            ctx.progress(f"rebuild: writing {target_events:,} events of history")
            written = await _fill_source(db, target_events)
            await db.execute("ANALYZE outbox")
        finally:
            await db.close()
        ctx.progress(f"rebuild: rebuilding from {written:,} events")
        started = time.perf_counter()
        outcome = await rebuild(source, target)
        seconds = time.perf_counter() - started
        db = await asyncpg.connect(asyncpg_dsn(target))
        try:
            counted = await db.fetchrow(
                "SELECT count(*), count(*) FILTER (WHERE status = 'succeeded') FROM runs"
            )
            runs, ended = (counted[0], counted[1]) if counted is not None else (0, 0)
            attempts = await db.fetchval("SELECT count(*) FROM stage_attempts WHERE status = 'succeeded'")
        finally:
            await db.close()
        if not runs or runs != ended or attempts != runs * 4:
            raise AssertionError(f"rebuilt {runs} runs ({ended} succeeded) and {attempts} succeeded attempts")
        ctx.note(
            f"{outcome.scanned:,} events ({outcome.applied:,} changing rows, {outcome.skipped:,} not) of {runs:,} "
            f"runs rebuilt in {seconds:.2f} s: {runs:,} succeeded runs, {runs * 4:,} stages, {runs * 5:,} attempts"
        )
        rate = outcome.scanned / seconds
        return [
            Figure("rebuild events/s", rate, "/s")
            .relative_to(ctx.references.postgres.rate)
            .aiming(Aim.at_least(AIM_EVENTS_PER_S))
        ]
    finally:
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
