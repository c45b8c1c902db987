"""Concurrency groups (pure): who may run, who waits, who is refused, who is released next.

A group admits one active run at a time. A new run either cancels the others
(`cancel_in_progress`), starts when none is active, waits in order, or — when `queue: N` runs
already wait — is refused with the reason. Waiting runs are never evicted silently.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from schemas.states import RUN_TERMINAL, RunStatus


@dataclass(frozen=True, slots=True)
class GroupMember:
    run_id: uuid.UUID  # UUIDv7: ordering by id is ordering by creation
    status: RunStatus
    waiting: bool

    @property
    def active(self) -> bool:
        return self.status not in RUN_TERMINAL and not self.waiting


@dataclass(frozen=True, slots=True)
class Admission:
    action: str  # "run" | "wait" | "refuse"
    reason: str | None = None
    cancel: tuple[uuid.UUID, ...] = field(default=())


def admit(group: str, *, cancel_in_progress: bool, queue: int | None, others: list[GroupMember]) -> Admission:
    unfinished = [m for m in others if m.status not in RUN_TERMINAL]
    if cancel_in_progress:
        return Admission("run", cancel=tuple(m.run_id for m in unfinished))
    if not any(m.active for m in unfinished):
        return Admission("run")
    waiting = sum(m.waiting for m in unfinished)
    if queue is not None and waiting >= queue:
        return Admission(
            "refuse",
            reason=f"concurrency group {group!r} is full: {waiting} run(s) already waiting (queue: {queue})",
        )
    return Admission("wait")


def next_to_release(members: list[GroupMember]) -> GroupMember | None:
    """The oldest waiting run, when no run of the group is active any more."""
    unfinished = [m for m in members if m.status not in RUN_TERMINAL]
    if any(m.active for m in unfinished):
        return None
    waiting = sorted((m for m in unfinished if m.waiting), key=lambda m: m.run_id)
    return waiting[0] if waiting else None
