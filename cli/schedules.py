"""`comet schedules`: every schedule of every project with its next fire time, as a table — what
`GET /projects/{id}/schedules` returns, across projects, for an operator."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from config.settings import CommonSettings
from db.engine import make_engine, make_sessionmaker
from db.faults import database_unavailable
from db.models import Schedule
from db.repositories.schedules import list_all


class ScheduleListError(Exception):
    """The schedules could not be read; the message is one line for the person."""


async def _load(settings: CommonSettings) -> list[tuple[str, Schedule]]:
    engine = make_engine(settings, application_name="comet-cli")
    try:
        async with make_sessionmaker(engine)() as session:
            return await list_all(session)
    finally:
        await engine.dispose()


def load(settings: CommonSettings) -> list[tuple[str, Schedule]]:
    try:
        return asyncio.run(_load(settings))
    except Exception as exc:
        if database_unavailable(exc):
            first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise ScheduleListError(
                f"cannot read the schedules: the database is unreachable ({first[:200]})"
            ) from None
        raise


def until(moment: datetime | None, now: datetime) -> str:
    """`in 3h 20m`, `in 45s`, `due` (the scheduler fires it within a second), `never`."""
    if moment is None:
        return "never"
    seconds = int((moment - now).total_seconds())
    if seconds <= 0:
        return "due"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    if hours:
        parts.append(f"{hours}h")
    if minutes and not days:
        parts.append(f"{minutes}m")
    if not (days or hours or minutes):
        parts.append(f"{secs}s")
    return "in " + " ".join(parts)


def table(rows: list[tuple[str, Schedule]], now: datetime) -> Table:
    out = Table(title="schedules", title_justify="left")
    for column in ("project", "source", "name", "cron", "timezone", "ref", "next fire (UTC)", "in"):
        out.add_column(column)
    for project, s in rows:
        next_at = s.next_fire_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if s.next_fire_at else "-"
        out.add_row(project, s.source, s.name, s.cron, s.timezone, s.ref, next_at, until(s.next_fire_at, now))
    return out


def show(settings: CommonSettings, console: Console | None = None) -> None:
    rows = load(settings)
    console = console or Console()
    if not rows:
        console.print("no schedules: add `on.schedule` to a .comet.yml or a schedule to a test suite")
        return
    console.print(table(rows, datetime.now(UTC)))
