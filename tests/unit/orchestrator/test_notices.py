"""Which notifications an event of a run's history gives, and which one an integration's filter
receives."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from orchestrator.notices import (
    CaseFacts,
    RunFacts,
    StageFacts,
    for_deployment_status,
    for_flaky_cases,
    for_run_status,
    for_stage_status,
)
from schemas.events import DeploymentStatusChanged, RunStatusChanged, StageStatusChanged
from schemas.notifications import ApprovalRequestedNotice, DeploymentNotice, RunNotice

AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
EVENT = uuid.UUID("01900000-0000-7000-8000-0000000000ee")
DEPLOYMENT = uuid.UUID("01900000-0000-7000-8000-0000000000dd")
RUN = RunFacts(
    id=uuid.UUID("01900000-0000-7000-8000-000000000001"),
    project_id=uuid.UUID("01900000-0000-7000-8000-0000000000aa"),
    project="shop",
    ref="refs/heads/main",
    sha="b" * 40,
    pipeline="ci",
    trigger="api",
    created_at=AT,
    finished_at=None,
)
URL = "https://ci.example.com/"


def _run(status: str) -> RunStatusChanged:
    return RunStatusChanged(
        run_id=RUN.id, project_id=RUN.project_id, status=status, previous="running", at=AT
    )


def _stage(status: str) -> StageStatusChanged:
    return StageStatusChanged(run_id=RUN.id, stage="deploy", status=status, at=AT)


def _facts(status: str, environment: str | None = "production") -> StageFacts:
    return StageFacts(
        name="deploy", environment=environment, status=status, queued_at=AT, started_at=AT, finished_at=None
    )


def test_a_failed_run_is_run_failed_first_and_run_finished_otherwise() -> None:
    [notice] = for_run_status(EVENT, _run("failed"), RUN, URL)
    assert notice.for_filter(["run.finished", "run.failed"]) == "run.failed"
    assert notice.for_filter(["run.finished"]) == "run.finished"
    assert notice.for_filter(["deployment.started"]) is None
    assert isinstance(notice.data, RunNotice)
    assert notice.data.url == f"https://ci.example.com/api/v1/runs/{RUN.id}"


def test_a_succeeded_run_is_not_a_failure() -> None:
    [notice] = for_run_status(EVENT, _run("succeeded"), RUN, URL)
    assert notice.for_filter(["run.failed"]) is None
    assert notice.for_filter(["run.failed", "run.finished"]) == "run.finished"


def test_a_run_that_is_not_finished_gives_nothing() -> None:
    assert for_run_status(EVENT, _run("running"), RUN, URL) == []


def test_a_stage_waiting_for_approval_asks_for_it_with_its_deployment() -> None:
    [notice] = for_stage_status(
        EVENT, _stage("waiting_approval"), RUN, _facts("waiting_approval"), False, URL
    )
    assert notice.events == ("approval.requested",)
    assert isinstance(notice.data, ApprovalRequestedNotice)
    assert notice.data.environment == "production"
    assert notice.data.deployment is not None
    assert notice.data.deployment.id is None


def test_a_deploying_stage_starts_and_finishes_a_deployment_with_the_stage_outcome() -> None:
    [started] = for_stage_status(EVENT, _stage("running"), RUN, _facts("running"), False, URL)
    assert started.events == ("deployment.started",)
    [finished] = for_stage_status(EVENT, _stage("failed"), RUN, _facts("failed"), False, URL)
    assert finished.events == ("deployment.finished",)
    assert isinstance(finished.data, DeploymentNotice)
    assert (finished.data.environment, finished.data.status, finished.data.sha) == (
        "production",
        "failed",
        RUN.sha,
    )


def _deployed(
    status: str, previous: str | None, approvals: list[dict[str, Any]] | None = None
) -> DeploymentStatusChanged:
    return DeploymentStatusChanged(
        deployment_id=DEPLOYMENT,
        project_id=RUN.project_id,
        run_id=RUN.id,
        stage="deploy",
        environment="production",
        status=status,
        previous=previous,
        sha="c" * 40,
        ref="refs/heads/main",
        url="https://shop.example.com",
        at=AT,
        approvals=approvals or [],
    )


def test_a_stage_with_deployment_rows_leaves_the_announcements_to_their_events() -> None:
    for status in ("waiting_approval", "running", "succeeded"):
        assert for_stage_status(EVENT, _stage(status), RUN, _facts(status), True, URL) == []


def test_a_deployment_starts_once_and_finishes_once_with_the_contract_fields() -> None:
    [started] = for_deployment_status(EVENT, _deployed("in_progress", "queued"), RUN, 0, AT, URL)
    assert started.events == ("deployment.started",)
    review = {
        "user_id": str(uuid.uuid4()),
        "decision": "rejected",
        "comment": "not today",
        "at": AT.isoformat(),
    }
    [finished] = for_deployment_status(EVENT, _deployed("rejected", "waiting", [review]), RUN, 1, AT, URL)
    assert finished.events == ("deployment.finished",)
    assert isinstance(finished.data, DeploymentNotice)
    assert (finished.data.id, finished.data.status, finished.data.url) == (
        DEPLOYMENT,
        "rejected",
        "https://shop.example.com",
    )
    assert finished.data.approvals[0].comment == "not today"
    assert finished.data.created_at == AT
    assert for_deployment_status(EVENT, _deployed("queued", "waiting"), RUN, 0, AT, URL) == []


def test_a_deployment_that_starts_waiting_for_approvals_asks_for_them() -> None:
    [asked] = for_deployment_status(EVENT, _deployed("waiting", None), RUN, 2, AT, URL)
    assert asked.events == ("approval.requested",)
    assert isinstance(asked.data, ApprovalRequestedNotice)
    assert asked.data.deployment is not None
    assert asked.data.deployment.id == DEPLOYMENT
    assert for_deployment_status(EVENT, _deployed("waiting", None), RUN, 0, AT, URL) == [], (
        "no approvals needed"
    )
    approved = {"user_id": str(uuid.uuid4()), "decision": "approved", "comment": "", "at": AT.isoformat()}
    assert for_deployment_status(EVENT, _deployed("waiting", None, [approved]), RUN, 1, AT, URL) == []


def test_stages_without_an_environment_and_other_moves_give_nothing() -> None:
    assert for_stage_status(EVENT, _stage("running"), RUN, _facts("running", None), False, URL) == []
    assert for_stage_status(EVENT, _stage("queued"), RUN, _facts("queued"), False, URL) == []


def test_each_newly_flaky_test_is_one_notice() -> None:
    cases = [
        CaseFacts("k1", "test_a", "tests.t", "tests/t.py", "unit"),
        CaseFacts("k2", "test_b", "tests.t", None, "unit"),
    ]
    notices = for_flaky_cases(EVENT, AT, RUN, cases, URL)
    assert [n.events for n in notices] == [("test.flaky",), ("test.flaky",)]
    assert [n.data.key for n in notices] == ["k1", "k2"]  # type: ignore[union-attr]
