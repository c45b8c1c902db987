"""A run's rows as the one projection writes them (db/projection.py), kept per run by `comet
analytics`, and the insight facts they imply — pure: no I/O, no clock.

Keeping the rows through the same `RowChanges` fold the live processes and `comet replay rebuild`
use means a fact is computed from exactly the values `runs`, `stages` and `stage_attempts` hold:
the insights of a history equal a SQL computation over its rows, with no second reading of the
events to drift. A fact is one row of `insight_facts`, keyed by (kind, member): a finished run, a
timed stage, a finished deployment, an attempt's test counts. Re-deriving a run's facts after any
event and upserting them is idempotent, so faust's at-least-once redelivery changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson
from sqlalchemy import DateTime, Table

from db.projection import ATTEMPTS, DEPLOYMENTS, PROJECTED_TYPES, RUNS, STAGES, Event, RowChanges

FactKind = Literal["run", "stage", "deployment", "tests"]
FINISHED_RUN = frozenset({"succeeded", "failed", "cancelled"})
# Stages and deployments count when they ran to a verdict (a cancelled or skipped one did not).
VERDICT = frozenset({"succeeded", "failed"})


@dataclass(frozen=True, slots=True)
class Fact:
    """One row of `insight_facts`: what the insights aggregate over a window of `at`."""

    kind: FactKind
    member_id: str
    project_id: str
    at: datetime
    status: str
    environment: str | None = None
    stage: str | None = None
    # A stage's duration (started → finished) or a successful deployment's lead time.
    value_s: float | None = None
    # A stage's queue wait (queued → started).
    wait_s: float | None = None
    tests_total: int = 0
    tests_flaky: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.member_id)

    def row(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "member_id": self.member_id,
            "project_id": self.project_id,
            "at": self.at,
            "status": self.status,
            "environment": self.environment,
            "stage": self.stage,
            "value_s": self.value_s,
            "wait_s": self.wait_s,
            "tests_total": self.tests_total,
            "tests_flaky": self.tests_flaky,
        }


def _datetime_columns(table: Table) -> frozenset[str]:
    return frozenset(c.name for c in table.columns if isinstance(c.type, DateTime))


_DATETIMES = {
    name: _datetime_columns(t)
    for name, t in (("run", RUNS), ("stages", STAGES), ("attempts", ATTEMPTS), ("deployments", DEPLOYMENTS))
}


def _parsed(row: Mapping[str, Any], columns: frozenset[str]) -> dict[str, Any]:
    out = dict(row)
    for name in columns & out.keys():
        value = out[name]
        if isinstance(value, str):
            out[name] = datetime.fromisoformat(value)
    return out


def _seconds(later: Any, earlier: Any) -> float | None:
    if isinstance(later, datetime) and isinstance(earlier, datetime):
        return (later - earlier).total_seconds()
    return None


class RunMirror:
    """One run's rows (run, stages, attempts, deployments), folded from its events.

    A run's events come from three topics (run-commands, run-status, stage-results) that faust
    reads in no particular order across topics, most visibly while catching up on a backlog: an
    attempt's result can arrive before the `run.changed` that queued the attempt. Nor is one
    topic's order the order the events were written: relays in several processes publish, and an
    event can be published twice (decision 0012). An event whose row is not there yet waits in
    `waiting` and is folded once it is; a run's `run.changed` events are folded in the order of
    their `revision` (each waits for the one before it; one already folded is dropped), so the
    rows end as the live projection wrote them whatever the order they came in (decision 0030).
    """

    __slots__ = ("_changes", "_waiting")

    MAX_WAITING = 1000  # a run whose run.requested is past retention must not grow without end

    def __init__(self, changes: RowChanges | None = None, waiting: list[Event] | None = None) -> None:
        self._changes = changes or RowChanges()
        self._waiting = waiting or []

    # -- state in and out of the faust table (JSON) ----------------------------------------------
    @classmethod
    def load(cls, data: bytes | str | None) -> RunMirror:
        if not data:
            return cls()
        raw = orjson.loads(data)
        changes = RowChanges()
        if raw.get("run"):
            run = _parsed(raw["run"], _DATETIMES["run"])
            changes.run_inserts[str(run["id"])] = run
        for stage in raw.get("stages", ()):
            changes.stage_inserts[str(stage["id"])] = _parsed(stage, _DATETIMES["stages"])
        for attempt in raw.get("attempts", ()):
            changes.attempt_inserts[str(attempt["id"])] = _parsed(attempt, _DATETIMES["attempts"])
        for deployment in raw.get("deployments", ()):
            changes.deployment_inserts[str(deployment["id"])] = _parsed(deployment, _DATETIMES["deployments"])
        waiting = [Event(w["type"], w["payload"], w["occurred_at"]) for w in raw.get("waiting", ())]
        return cls(changes, waiting)

    def dump(self) -> bytes:
        run = next(iter(self._changes.run_inserts.values()), None)
        return orjson.dumps(
            {
                "run": run,
                "stages": list(self._changes.stage_inserts.values()),
                "attempts": list(self._changes.attempt_inserts.values()),
                "deployments": list(self._changes.deployment_inserts.values()),
                "waiting": [
                    {"type": w.type, "payload": w.payload, "occurred_at": w.occurred_at}
                    for w in self._waiting
                ],
            }
        )

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def settled(self) -> bool:
        """False while the rows contradict each other in a way only a missing event explains: a
        finished run with an attempt still queued or running (its result, on another topic than
        the run's last change, has not come — or was lost). Nothing waits then, so without this
        a lost result would go unnoticed (decision 0030)."""
        run = next(iter(self._changes.run_inserts.values()), None)
        if run is None or run["status"] not in FINISHED_RUN:
            return True
        return all(a["status"] not in ("queued", "running") for a in self._changes.attempt_inserts.values())

    # -- folding ---------------------------------------------------------------------------------
    def apply(self, event: Event) -> bool:
        """Fold one event (or keep it waiting for its row); False when it changes nothing."""
        if event.type not in PROJECTED_TYPES or self._folded_before(event):
            return False
        if not self._placeable(event):
            if len(self._waiting) < self.MAX_WAITING:
                self._waiting.append(event)
            return True
        self._fold(event)
        while self._waiting:
            self._waiting = [w for w in self._waiting if not self._folded_before(w)]
            ready = [w for w in self._waiting if self._placeable(w)]
            if not ready:
                break
            self._waiting = [w for w in self._waiting if not self._placeable(w)]
            for waited in ready:
                self._fold(waited)
        return True

    def _revision(self, event: Event) -> tuple[int, int] | None:
        """A `run.changed`'s revision and the held run's, when both are known."""
        revision = event.payload.get("revision")
        run = self._changes.run_inserts.get(str(event.payload["run_id"]))
        if revision is None or run is None:
            return None
        return int(revision), int(run.get("revision") or 0)

    def _folded_before(self, event: Event) -> bool:
        """A `run.changed` the run's rows already reflect (published twice, or came late)."""
        if event.type != "run.changed":
            return False
        revisions = self._revision(event)
        return revisions is not None and revisions[0] <= revisions[1]

    def _placeable(self, event: Event) -> bool:
        c = self._changes
        if event.type == "run.requested":
            return True
        if event.type == "run.changed":
            if str(event.payload["run_id"]) not in c.run_inserts:
                return False
            revisions = self._revision(event)
            return revisions is None or revisions[0] == revisions[1] + 1
        return str(event.payload.get("attempt_id")) in c.attempt_inserts

    def _fold(self, event: Event) -> None:
        c = self._changes
        c.add(event)
        # Only changes to rows the mirror holds are kept (placeable events make no others).
        for pending in (
            c.run_updates,
            c.stage_updates,
            c.deployment_updates,
            c.started,
            c.finished,
            c.cancelled,
        ):
            pending.clear()
        c.stopping.clear()
        c.undelayed.clear()

    # -- facts -----------------------------------------------------------------------------------
    def facts(self) -> list[Fact]:
        """Every fact the run's rows imply now (none until its `run.requested` was seen)."""
        run = next(iter(self._changes.run_inserts.values()), None)
        if run is None:
            return []
        project = str(run["project_id"])
        found: list[Fact] = []
        if run["status"] in FINISHED_RUN and isinstance(run.get("finished_at"), datetime):
            found.append(Fact("run", str(run["id"]), project, run["finished_at"], run["status"]))
        names: dict[str, str] = {}
        for stage in self._changes.stage_inserts.values():
            names[str(stage["id"])] = stage["name"]
            found.extend(f for f in [_stage_fact(stage, project)] if f is not None)
        for deployment in self._changes.deployment_inserts.values():
            found.extend(f for f in [_deployment_fact(deployment, run, project)] if f is not None)
        for attempt in self._changes.attempt_inserts.values():
            summary = attempt.get("test_summary")
            if summary is None or not isinstance(attempt.get("finished_at"), datetime):
                continue
            found.append(
                Fact(
                    "tests",
                    str(attempt["id"]),
                    project,
                    attempt["finished_at"],
                    attempt["status"],
                    stage=names.get(str(attempt["stage_id"])),
                    tests_total=int(summary.get("total", 0)),
                    tests_flaky=int(summary.get("flaky", 0)),
                )
            )
        return found


def _stage_fact(stage: Mapping[str, Any], project: str) -> Fact | None:
    finished, started = stage.get("finished_at"), stage.get("started_at")
    if (
        stage["status"] not in VERDICT
        or not isinstance(finished, datetime)
        or not isinstance(started, datetime)
    ):
        return None
    return Fact(
        "stage",
        str(stage["id"]),
        project,
        finished,
        stage["status"],
        stage=stage["name"],
        value_s=_seconds(finished, started),
        wait_s=_seconds(started, stage.get("queued_at")),
    )


def _deployment_fact(deployment: Mapping[str, Any], run: Mapping[str, Any], project: str) -> Fact | None:
    finished = deployment.get("finished_at")
    if deployment["status"] not in VERDICT or not isinstance(finished, datetime):
        return None
    # Lead time for changes: from the change entering the pipeline (its run's creation; no event
    # carries the commit's own time, decision 0025) to its successful deployment.
    lead = _seconds(finished, run.get("created_at")) if deployment["status"] == "succeeded" else None
    return Fact(
        "deployment",
        str(deployment["id"]),
        project,
        finished,
        deployment["status"],
        environment=deployment["environment"],
        stage=deployment.get("stage"),
        value_s=lead,
    )
