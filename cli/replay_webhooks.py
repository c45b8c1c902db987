"""`comet replay webhooks --since T [--until T] [--project P] [--provider H] [--outcome O] [--dry-run]
[--force] [--rate N] [--quiet]`: re-drive a window of stored webhook deliveries (orchestrator/webhook_replay.py).

A line per delivery (what it would do / did, and why), a progress bar on stderr, and a one-line
summary. A real replay is paced at `--rate` deliveries a second (COMET_WEBHOOK_REPLAY_RATE) and
leaves one audit entry. An empty window, an unknown project or provider: one line, exit 1.
"""

from __future__ import annotations

import asyncio
import getpass
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cli.moments import parse_moment
from config.settings import OrchestratorSettings
from db.engine import make_engine, make_sessionmaker
from db.faults import database_unavailable
from db.models import Project
from db.repositories import audit
from db.repositories import webhooks as deliveries
from events.topics import Topics
from orchestrator.planning import DefinitionReader
from orchestrator.webhook_replay import (
    OUTCOMES,
    PROVIDERS,
    Counts,
    Judge,
    Judgement,
    Pacer,
    batch_size,
    chunks,
    next_page,
    redrive,
)
from schemas.ids import uuid7
from workers.git import MirrorCache


class ReplayWebhooksError(Exception):
    """The replay cannot be done; the message is one line for the person."""


@dataclass(frozen=True, slots=True)
class Options:
    since: str
    until: str | None = None
    project: str | None = None
    provider: str | None = None
    outcome: str | None = None
    dry_run: bool = False
    force: bool = False
    rate: float | None = None
    quiet: bool = False  # the summary only, no line per delivery


def _at(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def window(since: str, until: str | None, now: datetime) -> tuple[datetime, datetime | None]:
    """[since, until) as the arguments name it; a ReplayWebhooksError says what is wrong."""
    try:
        start = parse_moment(since, now).astimezone(UTC)
        end = parse_moment(until, now).astimezone(UTC) if until is not None else None
    except ValueError as exc:
        raise ReplayWebhooksError(str(exc)) from None
    except OverflowError:  # `99999999d` ago, or a zone that moves year 1 out of range
        raise ReplayWebhooksError("--since / --until is out of the range of dates") from None
    if end is not None and end <= start:
        raise ReplayWebhooksError(f"--until ({_at(end)}) must be after --since ({_at(start)})")
    return start, end


def check_choice(name: str, value: str | None, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        raise ReplayWebhooksError(f"unknown {name} {value!r}: use one of {', '.join(allowed)}")


async def find_project(session: AsyncSession, name_or_id: str) -> Project:
    """The project named `name_or_id`, or whose id it is."""
    try:
        as_id: uuid.UUID | None = uuid.UUID(name_or_id)
    except ValueError:
        as_id = None
    stmt = select(Project).where(Project.name == name_or_id)
    if as_id is not None:
        stmt = select(Project).where((Project.id == as_id) | (Project.name == name_or_id))
    project = (await session.scalars(stmt.limit(1))).first()
    if project is None:
        raise ReplayWebhooksError(f"no project named {name_or_id!r} (give its name or id)")
    return project


def describe(selection: deliveries.ReplaySelection, project: Project | None) -> str:
    parts = [f"received from {_at(selection.since)} to {_at(selection.until) if selection.until else 'now'}"]
    if project is not None:
        parts.append(f"of project {project.name}")
    if selection.provider is not None:
        parts.append(f"from {selection.provider}")
    if selection.outcome is not None:
        parts.append(f"with outcome {selection.outcome}")
    return " ".join(parts)


Emit = Callable[[Judgement], None]


async def replay(
    settings: OrchestratorSettings,
    options: Options,
    *,
    emit: Emit,
    total: Callable[[int], None] = lambda _n: None,
    git: MirrorCache | None = None,
    now: datetime | None = None,
) -> Counts:
    """Judge every selected delivery (and re-drive those that replay unless a dry run)."""
    check_choice("provider", options.provider, PROVIDERS)
    check_choice("outcome", options.outcome, OUTCOMES)
    since, until = window(options.since, options.until, now or datetime.now(UTC))
    rate = options.rate or settings.webhook_replay_rate
    if rate <= 0:
        raise ReplayWebhooksError("--rate must be a positive number of deliveries a second")
    engine = make_engine(settings, application_name="comet-replay-webhooks")
    try:
        sessions = make_sessionmaker(engine)
        return await _replay(sessions, settings, options, since, until, rate, emit, total, git)
    finally:
        await engine.dispose()


async def _replay(
    sessions: async_sessionmaker[AsyncSession],
    settings: OrchestratorSettings,
    options: Options,
    since: datetime,
    until: datetime | None,
    rate: float,
    emit: Emit,
    total: Callable[[int], None],
    git: MirrorCache | None,
) -> Counts:
    async with sessions() as session:
        project = None if options.project is None else await find_project(session, options.project)
        selection = deliveries.ReplaySelection(
            since, until, None if project is None else project.id, options.provider, options.outcome
        )
        count = await deliveries.count_selected(session, selection)
    if count == 0:
        raise ReplayWebhooksError(f"nothing to replay: no stored deliveries {describe(selection, project)}")
    total(count)
    judge = Judge(DefinitionReader(git or MirrorCache(Path(settings.git_cache_dir))))
    topics = Topics(settings.topic_namespace)
    replay_id = uuid7()
    pacer = Pacer(rate)
    counts = Counts()
    after = None
    try:
        while True:
            async with sessions() as session:
                page, after = await next_page(session, selection, after)
                if not page:
                    break
                judgements = await judge.page(session, page, force=options.force, replay_id=replay_id)
            for chunk in chunks(judgements, batch_size(rate)):
                replaying = [j for j in chunk if j.replays]
                if replaying and not options.dry_run:
                    await pacer.take(len(replaying))
                    async with sessions.begin() as session:
                        await redrive(session, topics, replaying, force=options.force, replay_id=replay_id)
                for j in chunk:
                    counts.add(j)
                    emit(j)
    finally:
        if not options.dry_run and counts.replayed:
            async with sessions.begin() as session:
                await audit.record(
                    session,
                    action=audit.WEBHOOK_REPLAYED,
                    target_type="webhook_window",
                    target_id=replay_id,
                    project_id=selection.project_id,
                    details=_details(options, selection, counts, replay_id),
                )
    return counts


def _details(
    options: Options, selection: deliveries.ReplaySelection, counts: Counts, replay_id: uuid.UUID
) -> dict[str, object]:
    return {
        "via": "cli",
        "os_user": getpass.getuser(),
        "replay_id": str(replay_id),
        "since": selection.since.isoformat(),
        "until": None if selection.until is None else selection.until.isoformat(),
        "provider": selection.provider,
        "outcome": selection.outcome,
        "forced": options.force,
        "scanned": counts.scanned,
        "replayed": counts.replayed,
        "skipped": counts.skipped,
    }


def run(settings: OrchestratorSettings, options: Options, out: Console | None = None) -> Counts:
    """The command: lines on stdout, a progress bar on stderr, the summary last."""
    check_choice("provider", options.provider, PROVIDERS)  # before the bar: one line, nothing else
    check_choice("outcome", options.outcome, OUTCOMES)
    window(options.since, options.until, datetime.now(UTC))
    out = out or Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True)
    progress = Progress(
        TextColumn("replaying webhooks" if not options.dry_run else "planning (dry run)"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
        # On a terminal the lines go above the bar; piped, they go straight to stdout.
        redirect_stdout=out.is_terminal,
        redirect_stderr=False,
    )
    task = progress.add_task("deliveries", total=None)

    def emit(j: Judgement) -> None:
        if not options.quiet:
            out.print(j.line(dry_run=options.dry_run), markup=False)
        progress.advance(task)

    try:
        with progress:
            counts = asyncio.run(
                replay(settings, options, emit=emit, total=lambda n: progress.update(task, total=n))
            )
    except ReplayWebhooksError:
        raise
    except Exception as exc:
        if database_unavailable(exc):
            first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise ReplayWebhooksError(f"cannot replay: the database is unreachable ({first[:200]})") from None
        raise
    out.print(counts.summary(dry_run=options.dry_run), markup=False)
    return counts
