"""`comet workers`: the fleet and its queues in two tables — what `GET /workers` and
`GET /queues` return, for an operator deciding whether to add or remove workers."""

from __future__ import annotations

import asyncio

from rich.console import Console
from rich.table import Table

from config.settings import CommonSettings
from db.engine import make_engine, make_sessionmaker
from db.repositories.fleet import QueueRow, WorkerRow, list_queues, list_workers
from events.lag import dispatch_lag
from events.topics import Topics


async def _load(settings: CommonSettings) -> tuple[list[WorkerRow], list[QueueRow], dict[str, int | None]]:
    engine = make_engine(settings, application_name="comet-cli")
    try:
        async with make_sessionmaker(engine)() as session:
            workers = await list_workers(session)
            queues = await list_queues(session)
    finally:
        await engine.dispose()
    lag = await dispatch_lag(
        settings.kafka_bootstrap_servers, Topics(settings.topic_namespace), [q.pool for q in queues]
    )
    return workers, queues, lag


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f}s"
    return f"{seconds / 60:.1f}m"


def show(settings: CommonSettings, console: Console | None = None) -> None:
    workers, queues, lag = asyncio.run(_load(settings))
    console = console or Console()
    table = Table(title="workers", title_justify="left")
    for column in ("worker", "pool", "labels", "slots", "busy", "state", "last heartbeat"):
        table.add_column(column)
    for w in workers:
        labels = ",".join(f"{k}={v}" for k, v in sorted(w.labels.items())) or "-"
        table.add_row(
            w.id, w.pool, labels, str(w.concurrency), str(w.busy), w.state, f"{_age(w.silent_s)} ago"
        )
    console.print(table if workers else "no workers have registered")
    queue_table = Table(title="queues", title_justify="left")
    for column in (
        "pool",
        "queued",
        "running",
        "workers",
        "busy/slots",
        "kafka lag",
        "oldest waiting",
        "note",
    ):
        queue_table.add_column(column)
    for q in queues:
        pool_lag = lag.get(q.pool)
        queue_table.add_row(
            q.pool,
            str(q.depth),
            str(q.running),
            str(q.workers),
            f"{q.busy}/{q.slots}",
            "-" if pool_lag is None else str(pool_lag),
            f"{q.oldest_stage} ({_age(q.oldest_wait_s)})" if q.oldest_stage else "-",
            q.reason or "",
        )
    console.print(queue_table if queues else "no pools have work or workers")
