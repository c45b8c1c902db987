"""`comet replay run RUN_ID`: the run's timeline, each input with the decision taken, and whether
today's `decide()` takes the same one (orchestrator/audit_trail.py does the comparing; this reads
the run, its plan, its history and the orchestrator's inbox, and prints a table or JSON)."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from config.settings import CommonSettings
from db.engine import make_engine, make_sessionmaker
from db.faults import database_unavailable
from db.models import InboxEntry, Run, Stage
from db.repositories.run_state import stage_state
from events.envelope import UndecodableEventError, decode
from events.history import run_history
from events.topics import Topics
from orchestrator.audit_trail import Audit, RecordedEvent, RunPlan, Step, audit
from orchestrator.inputs import INPUT_TYPES


class ReplayRunError(Exception):
    """The run cannot be audited; the message is one line for the person."""


async def _load(settings: CommonSettings, run_id: uuid.UUID) -> tuple[Audit, int]:
    engine = make_engine(settings, application_name="comet-replay")
    try:
        async with make_sessionmaker(engine)() as session:
            run = await session.get(Run, run_id)
            if run is None:
                raise ReplayRunError(f"no run {run_id}")
            plan = await _plan(session, run)
            recorded, undecodable = [], 0
            for event in await run_history(session, run_id, archive_dir=settings.archive_dir):
                try:
                    envelope = decode(orjson.dumps(event.envelope))
                except UndecodableEventError:
                    undecodable += 1
                    continue
                recorded.append(RecordedEvent(event.seq, envelope))
            inputs = [e.envelope.event_id for e in recorded if e.envelope.type in INPUT_TYPES]
            applied = set(
                (
                    await session.scalars(
                        select(InboxEntry.event_id).where(
                            InboxEntry.consumer == Topics(settings.topic_namespace).orchestrator_group,
                            InboxEntry.event_id.in_(inputs),
                        )
                    )
                ).all()
            )
    finally:
        await engine.dispose()
    return audit(run_id, recorded, plan, applied), undecodable


async def _plan(session: AsyncSession, run: Run) -> RunPlan:
    """The plan as the rows keep it: the stages' static parts, the run's sha and group."""
    rows = (await session.scalars(select(Stage).where(Stage.run_id == run.id).order_by(Stage.position))).all()
    # audit() keeps only the static parts (name, needs, pool, spec, position, matrix) of each.
    stages = tuple(stage_state(s) for s in rows)
    return RunPlan(
        sha=run.sha,
        stages=stages,
        pipeline_name=run.pipeline_name,
        concurrency_group=run.concurrency_group,
        variables=dict(run.variables),
    )


def load(settings: CommonSettings, run_id: str) -> tuple[Audit, int]:
    """The audit of the run, and how many of its events could not be decoded."""
    try:
        parsed = uuid.UUID(run_id)
    except ValueError:
        raise ReplayRunError(f"{run_id!r} is not a run id (a UUID)") from None
    try:
        return asyncio.run(_load(settings, parsed))
    except ReplayRunError:
        raise
    except Exception as exc:
        if database_unavailable(exc):
            first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise ReplayRunError(
                f"cannot read the run: the database is unreachable ({first[:200]})"
            ) from None
        raise


# -- output --------------------------------------------------------------------------------------
def verdict(result: Audit) -> str:
    """The last line: whether today's decide() agrees with every recorded decision."""
    compared = [s for s in result.steps if s.same is not None]
    pending = sum(1 for s in result.steps if s.kind == "pending")
    waiting = f"; {pending} not applied yet" if pending else ""
    if result.deterministic:
        return f"{len(compared)} inputs re-decided by today's decide(): every decision as recorded{waiting}"
    first = result.differences[0]
    return (
        f"{len(result.differences)} of {len(compared)} inputs decided differently today; the first at "
        f"event {first.seq} ({first.event_type}: {first.summary}){waiting}"
    )


def _today(step: Step) -> Text:
    if step.kind == "pending":
        return Text("not applied yet", style="yellow")
    if step.same is None or step.today is None:
        return Text("")
    if step.same:
        return Text("same", style="green")
    prefix = "differs (after an earlier difference): " if step.after_difference else "DIFFERS: "
    return Text(prefix + step.today.describe(), style="red" if not step.after_difference else "magenta")


def table(result: Audit) -> Table:
    out = Table(title=f"run {result.run_id}", title_justify="left")
    for column in ("#", "at (UTC)", "event", "decision recorded", "today's decide()"):
        out.add_column(column, overflow="fold")
    for step in result.steps:
        at = (step.decided_at or step.occurred_at).astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]
        decision = step.recorded.describe() if step.kind == "input" else ""
        out.add_row(str(step.seq), at, f"{step.event_type}: {step.summary}", decision, _today(step))
    return out


def to_json(result: Audit, undecodable: int) -> str:
    def outcome(o: Any) -> dict[str, Any] | None:
        if o is None:
            return None
        return {"changes": list(o.changes), "dispatches": list(o.dispatches), "note": o.note or None}

    def when(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    return json.dumps(
        {
            "run_id": str(result.run_id),
            "deterministic": result.deterministic,
            "differences": len(result.differences),
            "undecodable_events": undecodable,
            "steps": [
                {
                    "seq": s.seq,
                    "event_id": str(s.event_id),
                    "type": s.event_type,
                    "kind": s.kind,
                    "summary": s.summary,
                    "occurred_at": when(s.occurred_at),
                    "decided_at": when(s.decided_at),
                    "recorded": outcome(s.recorded) if s.kind == "input" else None,
                    "today": outcome(s.today),
                    "today_unrecorded": list(s.today.unrecorded) if s.today else [],
                    "same": s.same,
                    "after_difference": s.after_difference,
                }
                for s in result.steps
            ],
            "summary": verdict(result),
        },
        indent=2,
        ensure_ascii=False,
    )


def show(
    settings: CommonSettings, run_id: str, *, as_json: bool = False, console: Console | None = None
) -> bool:
    """Print the run's timeline; True when every decision is as recorded."""
    result, undecodable = load(settings, run_id)
    console = console or Console()
    if as_json:
        sys.stdout.write(to_json(result, undecodable) + "\n")
        return result.deterministic
    console.print(table(result))
    if undecodable:
        console.print(f"{undecodable} events of the run's history could not be decoded (left out)")
    console.print(verdict(result))
    return result.deterministic
