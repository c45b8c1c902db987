"""The one projection from events to rows (decision 0021): what `runs`, `stages` and
`stage_attempts` hold is what the events say, applied here — by the live orchestrator and worker
for the events they emit, and by `comet replay rebuild` (and a disaster-recovery replay) for the
whole history. There is no second code path that could drift.

Which event writes what:
- `run.requested`: inserts the run (`requested`), with the event's time as `created_at`.
- `run.changed`: the run's changed columns, new stages (whole rows), other stages' changed columns,
  new attempts (`queued`), queued attempts cancelled, running attempts asked to stop.
- `attempt.started`: a queued attempt runs (worker, fencing token, start time).
- `attempt.finished`: a queued or running attempt ends with its result, test summary and report
  problems; a result carrying a fencing token counts only under that token (the worker's fence).
- `attempt.dispatched`: a retry's backoff is over (`dispatch_at` cleared).
- `run.changed` also carries deployments (decision 0027): new rows whole, others' changed columns.
Every other event type changes no row.

Idempotent and order-tolerant: inserts do nothing when the row exists; an attempt only moves
forward (a start after its result, or a second result, is ignored, as `decide()` ignores them);
`run.changed` sets values (never increments), so replaying any suffix of a run's history in order
ends in the same rows. A batch is folded in memory first (a row created and changed within it is
written once) and written with one statement per kind of change (executemany).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy import DateTime, Table, bindparam, text, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from db.models import Deployment, Run, Stage, StageAttempt
from schemas.events import (
    EVENT_MODELS,
    AttemptDispatched,
    AttemptFinished,
    AttemptStarted,
    RunChanged,
    RunRequested,
)

RUNS = cast(Table, Run.__table__)
STAGES = cast(Table, Stage.__table__)
ATTEMPTS = cast(Table, StageAttempt.__table__)
DEPLOYMENTS = cast(Table, Deployment.__table__)
DERIVED_TABLES: tuple[Table, ...] = (RUNS, STAGES, ATTEMPTS, DEPLOYMENTS)

# Columns of the derived tables no event describes: a worker's liveness (lease and heartbeats)
# and how much log it shipped (log chunks are not events). `verify` ignores them.
NOT_DERIVED: dict[str, frozenset[str]] = {
    "runs": frozenset(),
    "stages": frozenset(),
    "stage_attempts": frozenset({"lease_expires_at", "heartbeat_at", "log_bytes", "log_truncated"}),
    "deployments": frozenset(),
}

PROJECTED_TYPES = frozenset(
    {RunRequested.TYPE, RunChanged.TYPE, AttemptStarted.TYPE, AttemptFinished.TYPE, AttemptDispatched.TYPE}
)


@dataclass(frozen=True, slots=True)
class Event:
    """What the projection reads of an envelope: its type, payload (JSON, today's schema) and time."""

    type: str
    payload: Mapping[str, Any]
    occurred_at: datetime | str


# -- JSON values to column values --------------------------------------------------------------
def _converters(table: Table) -> dict[str, Callable[[Any], Any]]:
    found: dict[str, Callable[[Any], Any]] = {}
    for column in table.columns:
        # Ids stay text: asyncpg takes a uuid as text, and parsing 100,000s of them costs.
        if isinstance(column.type, DateTime):
            found[column.name] = _to_datetime
    return found


def _to_datetime(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _to_uuid(value: Any) -> uuid.UUID | None:
    return uuid.UUID(value) if isinstance(value, str) else value


_CONVERT = {table.name: _converters(table) for table in DERIVED_TABLES}


def _columns(table: Table, values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `values` with its datetime columns parsed (the event's dict is left as is:
    live, it is written to the outbox after it was applied)."""
    row = dict(values)
    for name, convert in _CONVERT[table.name].items():
        if name in row:
            row[name] = convert(row[name])
    return row


def run_row(payload: Mapping[str, Any], occurred_at: datetime | str) -> dict[str, Any]:
    """The `runs` row a `run.requested` event creates (`create_run` inserts exactly this)."""
    at = _to_datetime(occurred_at)
    return _columns(
        RUNS,
        {
            # Parsed: `create_run` hands this row to the ORM, whose callers read `run.id` as a UUID.
            "id": _to_uuid(payload["run_id"]),
            "project_id": _to_uuid(payload["project_id"]),
            "number": payload["number"],
            "status": "requested",
            "ref": payload["ref"],
            "sha": payload.get("sha"),
            "trigger": payload.get("trigger") or {},
            "variables": payload.get("variables") or {},
            "created_by": _to_uuid(payload.get("created_by")),
            "definition_id": None,
            "pipeline_name": None,
            "concurrency_group": None,
            "failure_reason": None,
            "cancel_requested_at": None,
            "waiting_for_group": False,
            "retry_of_status": None,
            "retries": 0,
            "revision": 0,
            "queued_at": None,
            "started_at": None,
            "finished_at": None,
            "created_at": at,
            "updated_at": at,
        },
    )


# -- folding a batch -----------------------------------------------------------------------------
@dataclass(slots=True)
class RowChanges:
    """A batch of events as row changes, merged: rows created in the batch carry their later
    changes; changes to rows that exist already are grouped for executemany."""

    run_inserts: dict[str, dict[str, Any]] = field(default_factory=dict)
    run_updates: dict[str, dict[str, Any]] = field(default_factory=dict)
    stage_inserts: dict[str, dict[str, Any]] = field(default_factory=dict)
    stage_updates: dict[str, dict[str, Any]] = field(default_factory=dict)
    attempt_inserts: dict[str, dict[str, Any]] = field(default_factory=dict)
    deployment_inserts: dict[str, dict[str, Any]] = field(default_factory=dict)
    deployment_updates: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Guarded changes of attempts written before this batch (see `write` for their order).
    started: dict[str, dict[str, Any]] = field(default_factory=dict)
    stopping: set[str] = field(default_factory=set)
    finished: dict[str, dict[str, Any]] = field(default_factory=dict)
    cancelled: dict[str, dict[str, Any]] = field(default_factory=dict)
    undelayed: set[str] = field(default_factory=set)
    applied: int = 0  # events that implied a row change
    skipped: int = 0  # events of types that change no row

    def add(self, event: Event) -> None:
        """Fold one event into the batch's changes."""
        handler = _HANDLERS.get(event.type)
        if handler is None:
            self.skipped += 1
            return
        self.applied += 1
        handler(self, event)

    def _run_requested(self, event: Event) -> None:
        row = run_row(event.payload, event.occurred_at)
        self.run_inserts.setdefault(str(row["id"]), row)

    def _run_changed(self, event: Event) -> None:
        p = event.payload
        run_id = str(p["run_id"])
        run = p.get("run") or {}
        if p.get("revision") is not None:
            run = {**run, "revision": p["revision"]}
        if run:
            _merge(self.run_inserts, self.run_updates, run_id, _columns(RUNS, run))
        for stage in p.get("new_stages") or ():
            row = _columns(STAGES, stage)
            self.stage_inserts.setdefault(str(row["id"]), row)
        for stage_id, values in (p.get("stages") or {}).items():
            _merge(self.stage_inserts, self.stage_updates, str(stage_id), _columns(STAGES, values))
        for deployment in p.get("new_deployments") or ():
            row = _columns(DEPLOYMENTS, deployment)
            self.deployment_inserts.setdefault(str(row["id"]), row)
        for deployment_id, values in (p.get("deployments") or {}).items():
            _merge(
                self.deployment_inserts,
                self.deployment_updates,
                str(deployment_id),
                _columns(DEPLOYMENTS, values),
            )
        at = _to_datetime(p["at"])
        for attempt in p.get("new_attempts") or ():
            row = _columns(ATTEMPTS, attempt)
            self.attempt_inserts.setdefault(str(row["id"]), row)
        cancelled = {
            "status": "cancelled",
            "failure_kind": "cancelled",
            "failure_reason": p.get("cancel_reason"),
            "finished_at": at,
        }
        for attempt_id in map(str, p.get("cancelled_attempts") or ()):
            queued = self.attempt_inserts.get(attempt_id)
            if queued is None:
                self.cancelled.setdefault(attempt_id, {"_id": attempt_id, **cancelled})
            elif queued["status"] == "queued":
                queued.update(cancelled)
        for attempt_id in map(str, p.get("stopping_attempts") or ()):
            running = self.attempt_inserts.get(attempt_id)
            if running is None:
                self.stopping.add(attempt_id)
            elif running["status"] == "running":
                running["cancel_requested"] = True

    def _attempt_started(self, event: Event) -> None:
        p = event.payload
        attempt_id = str(p["attempt_id"])
        values = {
            "status": "running",
            "worker_id": p["worker_id"],
            "fencing_token": p["fencing_token"],
            "started_at": _to_datetime(p["started_at"]),
        }
        row = self.attempt_inserts.get(attempt_id)
        if row is None:
            self.started.setdefault(attempt_id, {"_id": attempt_id, **values})
        elif row["status"] == "queued":
            row.update(values)

    def _attempt_finished(self, event: Event) -> None:
        p = event.payload
        attempt_id = str(p["attempt_id"])
        values = attempt_result(p)
        row = self.attempt_inserts.get(attempt_id)
        if row is None:
            self.finished.setdefault(attempt_id, {"_id": attempt_id, **values})
            return
        token = values["fencing_token"]
        if row["status"] in ("queued", "running") and (token is None or row.get("fencing_token") == token):
            row.update(
                status=values["status"],
                exit_code=values["exit_code"],
                failure_kind=values["failure_kind"],
                failure_reason=values["failure_reason"],
                finished_at=values["finished_at"],
                test_summary=values["test_summary"],
                report_errors=values["report_errors"],
                worker_id=row.get("worker_id") or values["worker_id"],
                started_at=row.get("started_at") or values["started_at"],
            )

    def _attempt_dispatched(self, event: Event) -> None:
        attempt_id = str(event.payload["attempt_id"])
        row = self.attempt_inserts.get(attempt_id)
        if row is None:
            self.undelayed.add(attempt_id)
        else:
            row["dispatch_at"] = None


_HANDLERS: dict[str, Callable[[RowChanges, Event], None]] = {
    RunRequested.TYPE: RowChanges._run_requested,
    RunChanged.TYPE: RowChanges._run_changed,
    AttemptStarted.TYPE: RowChanges._attempt_started,
    AttemptFinished.TYPE: RowChanges._attempt_finished,
    AttemptDispatched.TYPE: RowChanges._attempt_dispatched,
}


def _merge(
    inserts: dict[str, dict[str, Any]],
    updates: dict[str, dict[str, Any]],
    row_id: str,
    values: dict[str, Any],
) -> None:
    if row_id in inserts:
        inserts[row_id].update(values)
    else:
        updates.setdefault(row_id, {"_id": row_id}).update(values)


def attempt_result(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The columns an `attempt.finished` event writes (and the guard's token)."""
    tests = payload.get("tests")
    return {
        "status": payload["status"],
        "exit_code": payload.get("exit_code"),
        "failure_kind": payload.get("failure_kind"),
        "failure_reason": payload.get("failure_reason"),
        "worker_id": payload.get("worker_id"),
        "started_at": _to_datetime(payload.get("started_at")),
        "finished_at": _to_datetime(payload["finished_at"]),
        "test_summary": dict(tests) if tests is not None else None,
        "report_errors": list(payload.get("report_problems") or []),
        "fencing_token": payload.get("fencing_token"),
    }


def fold(events: Iterable[Event], changes: RowChanges | None = None) -> RowChanges:
    """The row changes `events` (in order) imply, merged."""
    changes = changes or RowChanges()
    for event in events:
        changes.add(event)
    return changes


def from_envelope(envelope: Any) -> Event:
    """An `events.envelope.Envelope` (decoded, so already upcast) as the projection reads it."""
    return Event(envelope.type, envelope.payload, envelope.occurred_at)


def from_json(envelope: Mapping[str, Any], upcast: Callable[[str, int, int, dict[str, Any]], Any]) -> Event:
    """A stored envelope (the outbox's JSON) as the projection reads it; a payload written by an
    older schema is upcast first (`upcast(type, version, target, payload)`)."""
    kind = envelope["type"]
    payload = envelope["payload"]
    model = EVENT_MODELS.get(kind)
    version = int(envelope.get("schema_version", 1))
    if kind in PROJECTED_TYPES and model is not None and version < model.VERSION:
        payload = upcast(kind, version, model.VERSION, payload)
    return Event(kind, payload, envelope["occurred_at"])


# -- writing -------------------------------------------------------------------------------------
_STARTED = text(
    "UPDATE stage_attempts SET status = :status, worker_id = :worker_id, fencing_token = :fencing_token, "
    "started_at = :started_at WHERE id = :_id AND status = 'queued'"
)
_STOPPING = text(
    "UPDATE stage_attempts SET cancel_requested = true WHERE id = ANY(:ids) AND status = 'running'"
)
# A result counts for a queued or running attempt, under the token it names (if any): the
# worker's fence. The same statement records a worker's result live (`record_result`).
_FINISHED_SQL = (
    "UPDATE stage_attempts SET status = :status, exit_code = :exit_code, failure_kind = :failure_kind, "
    "failure_reason = :failure_reason, finished_at = :finished_at, "
    "test_summary = CAST(:test_summary AS jsonb), report_errors = CAST(:report_errors AS jsonb), "
    "worker_id = coalesce(worker_id, :worker_id), started_at = coalesce(started_at, :started_at) "
    "WHERE id = :_id AND status IN ('queued', 'running') "
    "AND (CAST(:fencing_token AS bigint) IS NULL OR fencing_token = :fencing_token)"
)
_FINISHED = text(_FINISHED_SQL)
_FINISHED_RETURNING = text(_FINISHED_SQL + " RETURNING id")
_CANCELLED = text(
    "UPDATE stage_attempts SET status = :status, failure_kind = :failure_kind, "
    "failure_reason = :failure_reason, finished_at = :finished_at WHERE id = :_id"
)
_UNDELAYED = text(
    "UPDATE stage_attempts SET dispatch_at = NULL WHERE id = ANY(:ids) AND dispatch_at IS NOT NULL"
)


# A group of at least this many new rows (a rebuild's batch) is written with COPY into a scratch
# table and one INSERT … SELECT … ON CONFLICT DO NOTHING; the live processes' few rows go by
# executemany.
COPY_ROWS = 500
_JSONB = {t.name: frozenset(c.name for c in t.columns if isinstance(c.type, JSONB)) for t in DERIVED_TABLES}


async def _copy_insert(
    connection: AsyncConnection, table: Table, columns: tuple[str, ...], rows: list[dict[str, Any]]
) -> None:
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection  # asyncpg
    assert driver is not None
    if not driver.is_in_transaction():
        # SQLAlchemy begins its transaction on the driver with its first statement: until then,
        # what the driver ran would commit on its own (and the scratch rows vanish at once).
        await connection.execute(text("SELECT 1"))
    scratch = f"projection_{table.name}"
    names = ", ".join(f'"{c}"' for c in columns)
    jsonb = _JSONB[table.name]
    await driver.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {scratch} (LIKE {table.name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    # SQLAlchemy's asyncpg connections take JSON as text (its own codec).
    records = [
        tuple(orjson.dumps(row[c]).decode() if c in jsonb else row[c] for c in columns) for row in rows
    ]
    await driver.copy_records_to_table(scratch, records=records, columns=list(columns))
    await driver.execute(
        f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {scratch} "  # noqa: S608 - our names
        f"ON CONFLICT DO NOTHING; TRUNCATE {scratch}"
    )


def _json_params(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    out["test_summary"] = (
        None if values["test_summary"] is None else orjson.dumps(values["test_summary"]).decode()
    )
    out["report_errors"] = orjson.dumps(values["report_errors"]).decode()
    return out


async def write(connection: AsyncConnection, changes: RowChanges) -> None:
    """Write folded changes: inserts first (parents before children), then updates grouped by the
    columns they set, then the attempts' guarded moves in the order events can make them (a start,
    a stop request, a result; cancels and backoff ends touch attempts nothing else moves)."""
    for table, inserts in (
        (RUNS, changes.run_inserts),
        (STAGES, changes.stage_inserts),
        (ATTEMPTS, changes.attempt_inserts),
        (DEPLOYMENTS, changes.deployment_inserts),
    ):
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in inserts.values():
            groups.setdefault(tuple(sorted(row)), []).append(row)
        for columns, group in groups.items():
            if len(group) >= COPY_ROWS:
                await _copy_insert(connection, table, columns, group)
            else:
                await connection.execute(insert(table).on_conflict_do_nothing(), group)
    for table, updates in (
        (RUNS, changes.run_updates),
        (STAGES, changes.stage_updates),
        (DEPLOYMENTS, changes.deployment_updates),
    ):
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in updates.values():
            by_columns.setdefault(tuple(sorted(row)), []).append(row)
        for group in by_columns.values():
            # Keys that name columns become the SET clause; `_id` selects the row.
            await connection.execute(update(table).where(table.c.id == bindparam("_id")), group)
    if changes.started:
        await connection.execute(_STARTED, list(changes.started.values()))
    if changes.stopping:
        await connection.execute(_STOPPING, {"ids": sorted(changes.stopping)})
    if changes.finished:
        await connection.execute(_FINISHED, [_json_params(v) for v in changes.finished.values()])
    if changes.cancelled:
        await connection.execute(_CANCELLED, list(changes.cancelled.values()))
    if changes.undelayed:
        await connection.execute(_UNDELAYED, {"ids": sorted(changes.undelayed)})


async def apply_events(connection: AsyncConnection, events: Iterable[Event]) -> RowChanges:
    """Apply `events` (in order) to the database of `connection`, in its transaction."""
    changes = fold(events)
    await write(connection, changes)
    return changes


async def apply_envelopes(connection: AsyncConnection, envelopes: Iterable[Any]) -> RowChanges:
    """Apply decoded envelopes (`events.envelope.Envelope`, e.g. read back from Kafka) to the
    database of `connection` in its transaction. For a disaster-recovery replay: a run's events
    must come in their order (one key, one partition); replaying events already applied is harmless."""
    return await apply_events(connection, (from_envelope(e) for e in envelopes))


async def record_result(connection: AsyncConnection, envelope: Any) -> bool:
    """The live worker's result: the `attempt.finished` projection under its fencing token, in the
    caller's transaction. False: the token is stale or the attempt already ended (refused; the
    caller must not emit the event)."""
    values = attempt_result(envelope.payload)
    row = (
        await connection.execute(
            _FINISHED_RETURNING, _json_params({"_id": envelope.payload["attempt_id"], **values})
        )
    ).first()
    return row is not None
