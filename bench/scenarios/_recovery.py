"""Pure arithmetic of the recovery scenario, on wall-clock timestamps (Unix seconds): the longest
stretch without a stage start, the first stage start after a fault that needed the restarted
process, the audit of a case's runs (all succeeded; a second attempt only where the first was
lost with a killed worker), and the broker log's group-coordinator lines about our groups."""

from __future__ import annotations

import itertools
import re
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Attempt:
    """A stage attempt as the database has it (times from the database clock)."""

    run_id: uuid.UUID
    stage_id: uuid.UUID
    number: int
    status: str
    worker_id: str | None
    run_created: float
    queued: float
    started: float | None
    # Claimed by a worker's Postgres sweep rather than from its Kafka partitions (its
    # `attempt.started` event has no cause); None when not known.
    swept: bool | None = None


@dataclass(frozen=True, slots=True)
class Gap:
    """A stretch of time without any stage start."""

    start: float
    end: float

    @property
    def ms(self) -> float:
        return (self.end - self.start) * 1000.0


def longest_gap(starts: Iterable[float], since: float, until: float) -> Gap:
    """The longest stretch of [since, until] without a stage start: the stretches between
    `since`, the starts strictly inside, and `until` (a quiet end counts as much as a quiet start)."""
    if until < since:
        raise ValueError(f"the window ends ({until}) before it begins ({since})")
    points = [since, *sorted(t for t in starts if since < t < until), until]
    return max((Gap(a, b) for a, b in itertools.pairwise(points)), key=lambda g: g.end - g.start)


def first_start(
    attempts: Iterable[Attempt], *, after: float, where: Callable[[Attempt], bool] = lambda _: True
) -> Attempt | None:
    """The attempt started first at or after `after` among those `where` accepts; None if none."""
    started = [a for a in attempts if a.started is not None and a.started >= after and where(a)]
    return min(started, key=lambda a: a.started or 0.0, default=None)


def ms_after(attempt: Attempt | None, moment: float) -> float | None:
    """Milliseconds from `moment` to the attempt's start; None without a started attempt."""
    if attempt is None or attempt.started is None:
        return None
    return (attempt.started - moment) * 1000.0


@dataclass(frozen=True, slots=True)
class Audit:
    """Whether a case lost anything: every run succeeded, and every attempt after a stage's first
    one replaced an attempt lost with a killed worker."""

    runs: int
    not_succeeded: Mapping[str, int]  # status -> runs
    lost: int  # attempts lost with a killed worker (retried as new attempts)
    lost_elsewhere: int  # attempts lost on a worker nobody killed
    retried: int  # attempts numbered 2 or more
    unexplained: int  # of those, attempts whose stage's previous attempt was not lost

    @property
    def ok(self) -> bool:
        return not self.not_succeeded and not self.lost_elsewhere and not self.unexplained

    def describe(self) -> str:
        text = f"{self.runs} runs triggered, "
        if self.not_succeeded:
            others = ", ".join(f"{n} {status}" for status, n in sorted(self.not_succeeded.items()))
            text += f"NOT ALL SUCCEEDED ({others})"
        else:
            text += "all succeeded"
        text += (
            f"; {self.lost} attempt(s) lost with the killed worker, {self.retried} retried as new attempts"
        )
        if self.lost_elsewhere:
            text += f"; {self.lost_elsewhere} LOST ON A WORKER NOBODY KILLED"
        if self.unexplained:
            text += f"; {self.unexplained} RETRIED ATTEMPT(S) WITHOUT A LOST ONE BEFORE"
        return text


def audit(
    statuses: Mapping[uuid.UUID, str], attempts: Sequence[Attempt], killed_workers: Collection[str]
) -> Audit:
    """`statuses`: the status of each run triggered (every one of them); `attempts`: all theirs."""
    by_stage = {(a.stage_id, a.number): a for a in attempts}
    lost = [a for a in attempts if a.status == "lost"]
    retried = [a for a in attempts if a.number > 1]
    unexplained = [
        a
        for a in retried
        if (previous := by_stage.get((a.stage_id, a.number - 1))) is None or previous.status != "lost"
    ]
    return Audit(
        runs=len(statuses),
        not_succeeded=dict(Counter(s for s in statuses.values() if s != "succeeded")),
        lost=sum(1 for a in lost if a.worker_id in killed_workers),
        lost_elsewhere=sum(1 for a in lost if a.worker_id not in killed_workers),
        retried=len(retried),
        unexplained=len(unexplained),
    )


# -- the broker's log -------------------------------------------------------------------------

_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] \w+ (.*)$")
_REBALANCE = re.compile(r"Preparing to rebalance group (\S+) .*\(reason: (.*)\)\.")
_CONTEXT = re.compile(r"^\[GroupCoordinator [^\]]*\] ")


def broker_lines(text: str, namespace: str, since: float, until: float) -> list[tuple[float, str]]:
    """(time, message) of the broker log lines naming one of `namespace`'s groups within
    [since, until]; log times are the broker's local time, like `datetime.timestamp` assumes."""
    found: list[tuple[float, str]] = []
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None or f"{namespace}." not in line:
            continue
        at = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if since <= at <= until:
            found.append((at, _CONTEXT.sub("", match[2])))
    return found


_EVENTS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    (
        re.compile(
            r"Static member with groupInstanceId=(\S+) and unknown member id joins group (?P<group>\S+) in (\w+) state"
        ),
        lambda m: f"static member {m[1]} (re)joined in {m[3]} state",
    ),
    (
        re.compile(r"Preparing to rebalance group (?P<group>\S+) in state .*\(reason: (.*?)\)\.? \("),
        lambda m: f"rebalance: {_reason(m[2])}",
    ),
    (re.compile(r"Member (\S+) in group (?P<group>\S+) has failed"), lambda m: f"member {m[1][:40]} expired"),
    (
        re.compile(r"Stabilized group (?P<group>\S+) generation \d+ with (\d+) members"),
        lambda m: f"stable with {m[2]} member(s)",
    ),
)


def _reason(text: str) -> str:
    if text.startswith("Adding new member"):
        return "a new member joined"
    if "heartbeat expiration" in text:
        return "a member's session expired"
    if "LeaveGroup" in text:
        return "a member left"
    return text[:100]


@dataclass(frozen=True, slots=True)
class GroupEvent:
    """One thing the group coordinator did to one of our groups."""

    at: float
    group: str
    what: str

    @property
    def rebalance(self) -> bool:
        return self.what.startswith("rebalance")


def group_events(lines: Iterable[tuple[float, str]]) -> list[GroupEvent]:
    """The coordinator's joins, rebalances, expiries and stabilizations among `broker_lines`."""
    found: list[GroupEvent] = []
    for at, message in lines:
        for pattern, describe in _EVENTS:
            if (m := pattern.search(message)) is not None:
                found.append(GroupEvent(at, m["group"], describe(m)))
                break
    return found


def describe_events(events: Sequence[GroupEvent], since: float, prefix: str, *, limit: int = 8) -> str:
    """`+4.6 s workers.default: static member w-1 (re)joined in Stable state; …` (times from `since`)."""
    if not events:
        return "no joins, rebalances or expiries"
    parts = [f"{e.at - since:+.1f} s {e.group.removeprefix(prefix)}: {e.what}" for e in events[:limit]]
    more = f"; … {len(events) - limit} more" if len(events) > limit else ""
    return "; ".join(parts) + more
