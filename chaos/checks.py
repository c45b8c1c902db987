"""The verdict of a chaos run, as pure functions over what the database holds once the storm is
over (unit-tested): what was acknowledged against the runs that exist, results committed twice,
transitions outside `schemas.states`' tables, stages that ran while another worker held the lease,
and the time each kind of fault took to heal."""

from __future__ import annotations

import itertools
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from bench.stats import percentile
from schemas.states import (
    ATTEMPT_TRANSITIONS,
    RUN_TERMINAL,
    RUN_TRANSITIONS,
    STAGE_TRANSITIONS,
    AttemptStatus,
    RunStatus,
    StageStatus,
)


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One status change in a run's history (the outbox, in its order): what changed (`run`,
    `stage <name>` or `attempt <id>`), from what (None: not said) to what."""

    run_id: uuid.UUID
    subject: str
    previous: str | None
    status: str


@dataclass(frozen=True, slots=True)
class AttemptSpan:
    """A stage attempt as the database has it: who held it and when (database clock, seconds)."""

    stage_id: uuid.UUID
    attempt_id: uuid.UUID
    worker_id: str | None
    started: float | None
    finished: float | None


def _allowed(subject: str, previous: str, status: str) -> bool:
    try:
        if subject == "run":
            return RunStatus(status) in RUN_TRANSITIONS[RunStatus(previous)]
        if subject.startswith("stage "):
            return StageStatus(status) in STAGE_TRANSITIONS[StageStatus(previous)]
        return AttemptStatus(status) in ATTEMPT_TRANSITIONS[AttemptStatus(previous)]
    except (ValueError, KeyError):
        return False  # a status no table knows


def illegal_transitions(history: Iterable[HistoryEvent]) -> list[str]:
    """Each change, in order, whose `previous` is not what the history had last said of its subject,
    or whose step the transition tables refuse; a description of each."""
    last: dict[tuple[uuid.UUID, str], str] = {}
    found: list[str] = []
    for event in history:
        key = (event.run_id, event.subject)
        before = last.get(key)
        if event.previous is not None and before is not None and event.previous != before:
            found.append(
                f"run {event.run_id} {event.subject}: says {event.previous} -> {event.status}, was {before}"
            )
        elif (
            before is not None
            and before != event.status
            and not _allowed(event.subject, before, event.status)
        ):
            found.append(f"run {event.run_id} {event.subject}: {before} -> {event.status}")
        elif (
            before is None
            and event.previous is not None
            and not _allowed(event.subject, event.previous, event.status)
        ):
            found.append(f"run {event.run_id} {event.subject}: {event.previous} -> {event.status}")
        last[key] = event.status
    return found


def doubly_committed(finished_attempt_ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
    """Attempts with more than one `attempt.finished` in the history (two committed results)."""
    return sorted(a for a, n in Counter(finished_attempt_ids).items() if n > 1)


def lease_overlaps(spans: Iterable[AttemptSpan]) -> list[str]:
    """Attempts of one stage that started before the previous attempt of that stage (another
    worker's) had ended: its lease was still held. An attempt that never ended counts as holding
    the lease for ever."""
    by_stage: dict[uuid.UUID, list[AttemptSpan]] = defaultdict(list)
    for span in spans:
        if span.started is not None:
            by_stage[span.stage_id].append(span)
    found: list[str] = []
    for stage_id, attempts in by_stage.items():
        attempts.sort(key=lambda s: s.started or 0.0)
        for earlier, later in itertools.pairwise(attempts):
            held_until = earlier.finished if earlier.finished is not None else float("inf")
            if later.started is not None and later.started < held_until:
                found.append(
                    f"stage {stage_id}: attempt {later.attempt_id} ({later.worker_id}) started "
                    f"while {earlier.attempt_id} ({earlier.worker_id}) held it"
                )
    return found


@dataclass(frozen=True, slots=True)
class Execution:
    """One run of a stage's script, from the marks it left (wall clock, seconds; `end` None: it
    never noted its end — killed)."""

    run_id: str
    stage: str
    attempt: str
    start: float
    end: float | None


def executions(text: str) -> list[Execution]:
    """The script runs noted as `<run> <stage> <attempt> start|end <time>` lines (a decimal comma
    accepted); other lines are ignored."""
    starts: dict[tuple[str, str, str], float] = {}
    ends: dict[tuple[str, str, str], float] = {}
    for line in text.splitlines():
        parts = line.split(" ")
        if len(parts) != 5 or parts[3] not in ("start", "end"):
            continue
        try:
            at = float(parts[4].replace(",", "."))
        except ValueError:
            continue
        key = (parts[0], parts[1], parts[2])
        (starts if parts[3] == "start" else ends)[key] = at
    return [Execution(*key, start, ends.get(key)) for key, start in starts.items()]


def script_overlaps(runs: Iterable[Execution]) -> list[str]:
    """Two attempts of one stage of one run whose scripts ran at the same time."""
    by_stage: dict[tuple[str, str], list[Execution]] = defaultdict(list)
    for run in runs:
        by_stage[(run.run_id, run.stage)].append(run)
    found: list[str] = []
    for (run_id, stage), attempts in by_stage.items():
        attempts.sort(key=lambda e: e.start)
        for i, earlier in enumerate(attempts):
            if earlier.end is None:
                continue
            found.extend(
                f"run {run_id} stage {stage}: attempt {later.attempt}'s script started while {earlier.attempt}'s ran"
                for later in attempts[i + 1 :]
                if later.attempt != earlier.attempt and later.start < earlier.end
            )
    return found


@dataclass(frozen=True, slots=True)
class Intake:
    """What the database says became of each acknowledged trigger and webhook delivery."""

    acknowledged: int
    finished: int  # exactly one run, in a terminal state
    lost: list[str]  # acknowledged, no run (or none finished)
    duplicated: list[str]  # acknowledged once, more than one run
    not_terminal: list[str]  # one run, still not finished


def intake(acknowledged: Mapping[str, Sequence[uuid.UUID]], statuses: Mapping[uuid.UUID, str]) -> Intake:
    """`acknowledged`: each acknowledged trigger or delivery (its key) and the runs found for it;
    `statuses`: every run's status."""
    lost: list[str] = []
    duplicated: list[str] = []
    not_terminal: list[str] = []
    finished = 0
    for key, runs in acknowledged.items():
        distinct = set(runs)
        if not distinct:
            lost.append(key)
        elif len(distinct) > 1:
            duplicated.append(key)
        elif statuses.get(next(iter(distinct))) in {s.value for s in RUN_TERMINAL}:
            finished += 1
        else:
            not_terminal.append(key)
    return Intake(len(acknowledged), finished, lost, duplicated, not_terminal)


@dataclass
class Heal:
    """How long each fault of one kind took to heal, in seconds (None: never seen healed)."""

    kind: str
    times: list[float | None] = field(default_factory=list)

    def _healed(self) -> list[float]:
        return [t for t in self.times if t is not None]

    @property
    def p50(self) -> float | None:
        healed = self._healed()
        return percentile(healed, 50) if healed else None

    @property
    def max(self) -> float | None:
        healed = self._healed()
        return max(healed) if healed else None

    @property
    def unhealed(self) -> int:
        return sum(1 for t in self.times if t is None)


def heals(faults: Iterable[tuple[str, float | None]]) -> list[Heal]:
    """(kind, seconds to heal) of each fault, grouped by kind in the order first seen."""
    out: dict[str, Heal] = {}
    for kind, seconds in faults:
        out.setdefault(kind, Heal(kind)).times.append(seconds)
    return list(out.values())


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def table(result: Intake, illegal: int, doubles: int, overlaps: int, healed: Sequence[Heal]) -> str:
    """The report `make chaos` prints."""
    rows = [
        ("acknowledged (triggers + webhooks)", str(result.acknowledged)),
        ("finished (one run, terminal)", str(result.finished)),
        ("lost", str(len(result.lost))),
        ("duplicated", str(len(result.duplicated))),
        ("not finished", str(len(result.not_terminal))),
        ("attempts with two committed results", str(doubles)),
        ("illegal transitions", str(illegal)),
        ("stages run under another's lease", str(overlaps)),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    lines.append("")
    lines.append(f"{'fault':<28} {'count':>5} {'heal p50':>10} {'heal max':>10} {'unhealed':>8}")
    lines.extend(
        f"{h.kind:<28} {len(h.times):>5} {_s(h.p50):>10} {_s(h.max):>10} {h.unhealed:>8}" for h in healed
    )
    return "\n".join(lines)


__all__ = [
    "AttemptSpan",
    "Execution",
    "Heal",
    "HistoryEvent",
    "Intake",
    "doubly_committed",
    "executions",
    "heals",
    "illegal_transitions",
    "intake",
    "lease_overlaps",
    "script_overlaps",
    "table",
]
