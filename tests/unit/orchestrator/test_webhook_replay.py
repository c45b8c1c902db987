"""What a webhook replay does with each stored delivery, and how it paces itself: the pure parts
of orchestrator/webhook_replay.py, and `plan_delivery` (the live planning a replay reuses) with a
repository that is only a dictionary."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from db.models import WebhookDelivery
from orchestrator.planning import DefinitionReader
from orchestrator.webhook_replay import Counts, Pacer, batch_size, chunks, judge, precheck
from orchestrator.webhooks import DeliveryPlan, RunToCreate, Skip, plan_delivery
from workers.git import MirrorCache

FIXTURE = Path(__file__).parents[2] / "fixtures" / "webhooks" / "github" / "push_branch.json"
SHA = "a" * 40
PIPELINE = "on:\n  push: {branches: [main]}\nstages:\n  build: {run: 'true'}\n"


def delivery(
    *, ref: str = "refs/heads/main", outcome: str = "accepted", run_id: uuid.UUID | None = None, **extra: Any
) -> WebhookDelivery:
    body = json.loads(FIXTURE.read_text())
    body["ref"], body["after"] = ref, SHA
    body["head_commit"] = body["commits"][-1] | {"id": SHA}
    return WebhookDelivery(
        id=uuid.uuid4(),
        provider="github",
        delivery_id=extra.pop("delivery_id", "d-1"),
        project_id=extra.pop("project_id", uuid.uuid4()),
        event="push",
        action=None,
        outcome=outcome,
        reason=extra.pop("reason", None),
        headers={"x-github-event": "push", "x-github-delivery": "d-1"},
        body=json.dumps(body).encode(),
        run_id=run_id,
        redeliveries=0,
        received_at=datetime(2026, 11, 30, 2, 0, tzinfo=UTC),
    )


class FakeGit:
    """The two calls planning makes, answered from a dictionary of `.comet.yml` texts by commit."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files
        self.reads = 0

    async def resolve(self, repo_url: str, ref: str) -> str:
        return SHA

    async def read_file(self, repo_url: str, sha: str, path: str) -> bytes | None:
        self.reads += 1
        text = self.files.get(sha)
        return None if text is None else text.encode()

    async def changed_paths(self, repo_url: str, before: str, sha: str) -> tuple[str, ...]:
        return ("src/app.py",)


def reader(files: dict[str, str]) -> DefinitionReader:
    return DefinitionReader(cast(MirrorCache, FakeGit(files)))


async def test_a_replayed_delivery_starts_its_run_with_a_replay_trigger_pointing_at_the_delivery() -> None:
    d = delivery()
    replay_id = uuid.uuid4()

    plan = await plan_delivery(reader({SHA: PIPELINE}), d, "/repo", forced=True, replay_id=replay_id)

    assert [(r.ref, r.sha) for r in plan.runs] == [("refs/heads/main", SHA)]
    trigger = plan.runs[0].trigger
    assert trigger["kind"] == "replay"
    assert trigger["delivery"] == str(d.id)
    assert trigger["replay_id"] == str(replay_id)
    assert trigger["delivery_id"] == "d-1"
    assert trigger["event"] == "push"  # `if:` conditions and pools see the same event as live
    assert plan.runs[0].why == "push to branch 'main' matches on.push"


async def test_a_live_delivery_still_starts_a_webhook_run() -> None:
    plan = await plan_delivery(reader({SHA: PIPELINE}), delivery(), "/repo", forced=False)

    assert plan.runs[0].trigger["kind"] == "webhook"
    assert "replay_id" not in plan.runs[0].trigger


async def test_a_push_outside_on_is_skipped_as_not_matched_with_the_reason() -> None:
    plan = await plan_delivery(reader({SHA: PIPELINE}), delivery(ref="refs/heads/dev"), "/repo", forced=False)

    assert plan.runs == []
    assert plan.skips == [Skip("not_matched", "branch 'dev' matches none of on.push.branches")]
    assert plan.reasons == ["branch 'dev' matches none of on.push.branches"]


async def test_a_commit_without_a_definition_is_skipped_as_such() -> None:
    plan = await plan_delivery(reader({}), delivery(), "/repo", forced=False)

    assert [s.kind for s in plan.skips] == ["no_definition"]


def test_a_rejected_delivery_has_nothing_to_replay_even_when_forced() -> None:
    j = precheck(delivery(outcome="rejected", reason="bad json"), force=True)

    assert j is not None
    assert j.skip == "rejected at intake"
    assert j.detail == "skipped: rejected at intake (bad json); nothing to replay"


def test_a_delivery_that_produced_its_run_is_skipped_unless_forced() -> None:
    run_id = uuid.uuid4()
    d = delivery(run_id=run_id)

    skipped = precheck(d, force=False)

    assert skipped is not None
    assert skipped.skip == "already produced its run"
    assert str(run_id) in skipped.detail
    assert precheck(d, force=True) is None


def test_a_delivery_without_its_run_must_be_planned() -> None:
    assert precheck(delivery(outcome="ignored"), force=False) is None


def test_a_planned_run_reads_would_start_a_run_for_the_ref_because_on_matches() -> None:
    d = delivery()
    plan = DeliveryPlan(
        d.id, uuid.uuid4(), False, runs=[RunToCreate("refs/heads/main", SHA, {}, "on.push ok")]
    )

    j = judge(d, plan)

    assert j.replays
    assert j.line() == (
        f"2026-11-30T02:00:00Z github d-1 (push): would start a run for refs/heads/main at {SHA[:12]} "
        "because on.push ok"
    )
    assert j.line(dry_run=False).endswith(
        f"(push): re-driven: starts a run for refs/heads/main at {SHA[:12]} because on.push ok"
    )


def test_a_mismatch_reads_skipped_on_does_not_match_with_the_reason() -> None:
    d = delivery()
    plan = DeliveryPlan(d.id, uuid.uuid4(), False, skips=[Skip("not_matched", "branch 'x' matches none")])

    j = judge(d, plan)

    assert not j.replays
    assert j.skip == "on: does not match"
    assert j.detail == "skipped: on: does not match (branch 'x' matches none)"


def test_an_event_that_never_runs_is_skipped_with_its_reason() -> None:
    d = delivery()
    plan = DeliveryPlan(d.id, uuid.uuid4(), False, skips=[Skip("not_runnable", "branch deletion")])

    assert judge(d, plan).detail == "skipped: branch deletion"


def test_the_summary_counts_scanned_replayed_and_skipped_by_reason() -> None:
    d = delivery()
    counts = Counts()
    counts.add(judge(d, DeliveryPlan(d.id, uuid.uuid4(), False, runs=[RunToCreate("r", SHA, {})])))
    counts.add(judge(d, DeliveryPlan(d.id, uuid.uuid4(), False, skips=[Skip("not_matched", "no")])))
    already = precheck(delivery(run_id=uuid.uuid4()), force=False)
    assert already is not None
    counts.add(already)

    assert (counts.scanned, counts.replayed, counts.skipped, counts.runs) == (3, 1, 2, 1)
    assert counts.summary(dry_run=False) == (
        "scanned 3 / replayed 1 (to start 1 run) / skipped 2 (already produced its run 1, on: does not match 1)"
    )
    assert counts.summary(dry_run=True).startswith("dry run: scanned 3 / would replay 1 (would start 1 run)")
    assert counts.summary(dry_run=True).endswith("; nothing was changed")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


async def test_the_pacer_lets_the_rate_through_and_no_faster() -> None:
    clock = FakeClock()
    pacer = Pacer(100.0, clock=clock, sleep=clock.sleep)

    for _ in range(5):
        await pacer.take(10)

    assert clock.slept == [0.1, 0.1, 0.1, 0.1]  # 50 items in 0.4 s + the first batch at once
    assert clock.now == pytest.approx(100.4)


async def test_the_pacer_catches_up_after_a_stall_by_at_most_a_second() -> None:
    clock = FakeClock()
    pacer = Pacer(10.0, clock=clock, sleep=clock.sleep)
    await pacer.take(1)
    clock.now += 5.0  # planning stalled for five seconds

    for _ in range(3):
        await pacer.take(5)

    assert clock.slept == [0.5, 0.5]  # no burst of fifty: the schedule restarted


def test_a_pace_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Pacer(0)


@pytest.mark.parametrize(("rate", "size"), [(0.5, 1), (20, 1), (200, 10), (2000, 100), (100_000, 100)])
def test_deliveries_are_re_driven_about_twenty_commits_a_second(rate: float, size: int) -> None:
    assert batch_size(rate) == size


def test_chunks_cover_every_item_in_order() -> None:
    assert [list(c) for c in chunks([1, 2, 3, 4, 5], 2)] == [[1, 2], [3, 4], [5]]
