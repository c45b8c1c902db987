"""Concurrency groups: admission and release, as tables."""

from __future__ import annotations

import uuid

import pytest

from orchestrator.concurrency import GroupMember, admit, next_to_release
from schemas.ids import uuid7
from schemas.states import RunStatus

R = RunStatus


def member(status: RunStatus, waiting: bool = False) -> GroupMember:
    return GroupMember(uuid7(), status, waiting)


@pytest.mark.parametrize(
    ("others", "queue", "action"),
    [
        ([], None, "run"),
        ([member(R.SUCCEEDED)], None, "run"),
        ([member(R.RUNNING)], None, "wait"),
        ([member(R.QUEUED)], 1, "wait"),
        ([member(R.RUNNING), member(R.QUEUED, waiting=True)], 1, "refuse"),
        ([member(R.RUNNING), member(R.QUEUED, waiting=True)], 2, "wait"),
        ([member(R.RUNNING)], 0, "refuse"),
        ([member(R.QUEUED, waiting=True)], 0, "run"),
    ],
    ids=[
        "empty",
        "only-finished",
        "active",
        "active-queue-room",
        "queue-full",
        "queue-room",
        "queue-zero",
        "only-waiters",
    ],
)
def test_admission_follows_the_group_state(others: list[GroupMember], queue: int | None, action: str) -> None:
    assert admit("g", cancel_in_progress=False, queue=queue, others=others).action == action


def test_a_refusal_names_the_group_and_the_queue() -> None:
    refusal = admit(
        "deploy-main", cancel_in_progress=False, queue=1, others=[member(R.RUNNING), member(R.QUEUED, True)]
    )
    assert refusal.reason == "concurrency group 'deploy-main' is full: 1 run(s) already waiting (queue: 1)"


def test_cancel_in_progress_runs_at_once_and_cancels_every_unfinished_run() -> None:
    running, waiting, done = member(R.RUNNING), member(R.QUEUED, True), member(R.FAILED)
    admission = admit("g", cancel_in_progress=True, queue=0, others=[running, waiting, done])
    assert admission.action == "run"
    assert set(admission.cancel) == {running.run_id, waiting.run_id}


def test_the_oldest_waiting_run_is_released_once_nothing_is_active() -> None:
    older, newer = member(R.QUEUED, True), member(R.QUEUED, True)
    assert next_to_release([newer, older, member(R.SUCCEEDED)]) == older


def test_nothing_is_released_while_a_run_is_active() -> None:
    assert next_to_release([member(R.RUNNING), member(R.QUEUED, True)]) is None


def test_nothing_is_released_when_nobody_waits() -> None:
    assert next_to_release([member(R.SUCCEEDED)]) is None


def test_ids_order_by_creation() -> None:
    first, second = uuid7(), uuid7()
    assert isinstance(first, uuid.UUID)
    assert first < second
