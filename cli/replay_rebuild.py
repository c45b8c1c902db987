"""`comet replay rebuild --into URL` and `comet replay verify --against URL`: rebuild the derived
state (runs, stages, attempts) from this database's event history into another database
(db/rebuild.py), and compare two databases' derived tables (db/verify.py). A progress bar while
they work, then a one-line summary; errors are one line (`RebuildCommandError`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from config.settings import CommonSettings
from db.faults import database_unavailable
from db.rebuild import RebuildError, RebuildOutcome, describe_copy, first_line, rebuild
from db.verify import Comparison, compare

T = TypeVar("T")


class RebuildCommandError(Exception):
    """The command failed; the message is one line for the person."""


def _progress(console: Console) -> Progress:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    return Progress(*columns, console=console, transient=True)


def _run(work: Coroutine[Any, Any, T], what: str) -> T:
    try:
        return asyncio.run(work)
    except RebuildError as exc:
        raise RebuildCommandError(str(exc)) from None
    except Exception as exc:
        if database_unavailable(exc) or isinstance(exc, OSError):
            raise RebuildCommandError(
                f"cannot {what}: a database is unreachable ({first_line(exc)})"
            ) from None
        raise RebuildCommandError(f"cannot {what}: {type(exc).__name__}: {first_line(exc)}") from None


def rebuild_summary(outcome: RebuildOutcome, seconds: float) -> str:
    rate = f" ({outcome.scanned / seconds:,.0f} events/s)" if seconds > 0 and outcome.scanned else ""
    resumed = f" after event {outcome.resumed_after} (rebuilt before)" if outcome.resumed_after else ""
    return (
        f"rebuilt from {outcome.scanned} events{resumed} in {seconds:.1f} s{rate}: applied {outcome.applied}, "
        f"skipped {outcome.skipped} (no row change); copied {describe_copy(outcome.copied)}"
    )


def run_rebuild(settings: CommonSettings, into: str, console: Console | None = None) -> str:
    """Rebuild into `into`; returns the summary line."""
    console = console or Console(stderr=True)
    if _same(settings.database_url, into):
        raise RebuildCommandError("--into names this very database: rebuild into another, empty one")
    started = time.monotonic()
    # The bar appears once the target is accepted: a refusal is one line and nothing else.
    progress = _progress(console)
    task: list[TaskID] = []

    def begin(total: int) -> None:
        progress.start()
        task.append(progress.add_task("applying events", total=total))

    def advance(n: int) -> None:
        progress.advance(task[0], n)

    try:
        work = rebuild(
            settings.database_url,
            into,
            archive_dir=settings.archive_dir,
            on_start=begin,
            on_batch=advance,
        )
        outcome = _run(work, "rebuild")
    finally:
        if task:
            progress.stop()
    return rebuild_summary(outcome, time.monotonic() - started)


def verify_report(result: Comparison) -> list[str]:
    """The lines `verify` prints: `identical`, or the differences and a count."""
    counted = ", ".join(f"{table} {n}" for table, n in result.rows.items())
    if result.identical:
        return [f"identical ({counted} rows compared)"]
    lines = [d.line() for d in result.differences]
    more = result.total_differences - len(result.differences)
    if more:
        lines.append(f"... and {more} more")
    lines.append(f"{result.total_differences} differences ({counted} rows compared here)")
    return lines


def run_verify(
    settings: CommonSettings, against: str, console: Console | None = None
) -> tuple[bool, list[str]]:
    """Compare this database with `against`; (identical, lines to print)."""
    console = console or Console(stderr=True)
    progress = _progress(console)
    task: list[TaskID] = []

    def on_rows(n: int) -> None:
        if not task:  # shown once rows are being compared: an error is one line and nothing else
            progress.start()
            task.append(progress.add_task("comparing rows", total=None))
        progress.advance(task[0], n)

    try:
        result = _run(compare(settings.database_url, against, on_rows=on_rows), "verify")
    finally:
        if task:
            progress.stop()
    return result.identical, verify_report(result)


def _same(a: str, b: str) -> bool:
    from sqlalchemy.engine import make_url

    from db.rebuild import sqlalchemy_url

    try:
        x, y = make_url(sqlalchemy_url(a)), make_url(sqlalchemy_url(b))
    except Exception:
        return False
    return (x.host, x.port, x.database) == (y.host, y.port, y.database)
