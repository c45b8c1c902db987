"""The deployment rules `decide()` applies (decision 0027). Pure: no I/O, no clock.

A stage with `environment:` deploys. When its needs are done it opens a Deployment (`waiting`)
instead of being queued, and the deployment is held until:
1. its ref is one the environment's `branches` allow — otherwise it is `rejected` at once and the
   stage fails with the reason;
2. it has its approvals (the environment's `required_approvals`, at least one for a stage with
   `approval: true`), from distinct people, never the person who triggered the run when the
   environment forbids self-approval — the stage waits in `waiting_approval`; a rejection, or no
   approvals by the deadline (`approval_timeout_s`), fails it with the reason;
3. its environment's `wait_timer` has passed since it was approved;
4. its environment is free: one deployment at a time per environment, the next in line first.
   That is the only cross-run fact, decided by the shell under the environment's lock and handed
   in as `EnvironmentGranted` (like a concurrency group's release).
Then it is `queued` with its stage, `in_progress` while the stage runs, and ends with it.

The environment's rules come from the stage's spec (`deploy_rules`, a snapshot the shell takes
when it plans the run), and time from the inputs (`now`, a timer's `at`), so the audit of a run's
history re-derives every decision.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from orchestrator.model import DeploymentState, PlanFailed, Planned, Review, RunState, StageState
from schemas.deployments import DEPLOYMENT_OPEN, DEPLOYMENT_TERMINAL
from schemas.events import DeploymentStatusChanged
from schemas.globs import glob_match_any
from schemas.states import StageStatus

# A stage that failed because its deployment was refused (a branch rule, a rejection, no approval
# in time): never retried by `retry.when`.
REFUSED_KIND = "deployment_refused"
DEFAULT_APPROVAL_TIMEOUT_S = 24 * 3600.0
_IDS = uuid.UUID("5b0f3c1e-27a4-4d0b-9a57-0c7e1d2e6f10")


@dataclass(frozen=True, slots=True)
class Rules:
    required_approvals: int = 0
    allow_self_approval: bool = True
    branches: tuple[str, ...] = ()
    wait_timer_s: float = 0.0
    approval_timeout_s: float = DEFAULT_APPROVAL_TIMEOUT_S

    def spec(self) -> dict[str, Any]:
        """As the stage's spec keeps it (`deploy_rules`)."""
        return {
            "required_approvals": self.required_approvals,
            "allow_self_approval": self.allow_self_approval,
            "branches": list(self.branches),
            "wait_timer_s": self.wait_timer_s,
            "approval_timeout_s": self.approval_timeout_s,
        }


def rules_of(spec: Mapping[str, Any]) -> Rules:
    raw = spec.get("deploy_rules") or {}
    return Rules(
        required_approvals=int(raw.get("required_approvals", 0)),
        allow_self_approval=bool(raw.get("allow_self_approval", True)),
        branches=tuple(str(b) for b in raw.get("branches") or ()),
        wait_timer_s=float(raw.get("wait_timer_s", 0.0)),
        approval_timeout_s=float(raw.get("approval_timeout_s", DEFAULT_APPROVAL_TIMEOUT_S)),
    )


def deployment_id(run_id: uuid.UUID, stage: str, number: int) -> uuid.UUID:
    return uuid.uuid5(_IDS, f"{run_id}/{number}/{stage}")


def branch_of(ref: str) -> str | None:
    if ref.startswith("refs/heads/"):
        return ref.removeprefix("refs/heads/")
    return None if ref.startswith("refs/") else ref


def branch_refusal(rules: Rules, ref: str, environment: str) -> str | None:
    """Why `ref` may not deploy to `environment`; None when it may."""
    if not rules.branches:
        return None
    allowed = ", ".join(rules.branches)
    branch = branch_of(ref)
    if branch is None:
        return f"{ref} is not a branch; only branches {allowed} may deploy to {environment}"
    try:
        if glob_match_any(rules.branches, branch) is not None:
            return None
    except ValueError:
        pass  # a malformed glob allows nothing
    return f"branch {branch} may not deploy to {environment}: only {allowed} may"


def approved_by(deployment: DeploymentState) -> list[str]:
    return list(dict.fromkeys(r.user_id for r in deployment.approvals if r.decision == "approved"))


def is_open(deployment: DeploymentState | None) -> bool:
    return deployment is not None and deployment.status in DEPLOYMENT_OPEN


def find(state: RunState, deployment_id_: uuid.UUID) -> DeploymentState | None:
    for deployment in state.deployments.values():
        if deployment.id == deployment_id_:
            return deployment
    return None


@dataclass(frozen=True, slots=True)
class StageMove:
    """What a deployment rule does to its stage: move it to `status` with these changes."""

    status: StageStatus
    changes: Mapping[str, object] = dataclasses.field(default_factory=dict)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def begin(state: RunState, stage: StageState, now: datetime) -> tuple[DeploymentState, StageMove | None]:
    """The stage's needs are done: open its deployment and hold it as far as the rules say."""
    previous = state.deployments.get(stage.name)
    number = previous.number + 1 if previous is not None else 1
    rules = rules_of(stage.spec)
    required = max(rules.required_approvals, 1 if stage.spec.get("approval") else 0)
    trigger = state.trigger
    rollback_of = trigger.get("rollback_of") if trigger.get("kind") == "rollback" else None
    environment = str(stage.spec["environment"])
    deployment = DeploymentState(
        id=deployment_id(state.id, stage.name, number),
        stage=stage.name,
        number=number,
        environment=environment,
        status="waiting",
        ref=state.ref,
        sha=state.sha,
        url=stage.spec.get("environment_url"),
        rollback_of=uuid.UUID(str(rollback_of)) if rollback_of else None,
        triggered_by=state.created_by,
        required_approvals=required,
        allow_self_approval=rules.allow_self_approval,
        created_at=now,
    )
    refusal = branch_refusal(rules, state.ref, environment)
    if refusal is not None:
        refused = dataclasses.replace(deployment, status="rejected", reason=refusal, finished_at=now)
        return refused, StageMove(
            StageStatus.FAILED, {"failure_reason": refusal, "failure_kind": REFUSED_KIND}
        )
    return hold(deployment, stage, now)


def hold(
    deployment: DeploymentState, stage: StageState, now: datetime
) -> tuple[DeploymentState, StageMove | None]:
    """A waiting deployment as far as its approvals, deadline and wait timer let it go at `now`:
    still waiting for approvals (its stage at the gate), failed for want of them, waiting out its
    timer, or ready (in line for its environment)."""
    if deployment.status != "waiting":
        return deployment, None
    rules = rules_of(stage.spec)
    have = len(approved_by(deployment))
    if have < deployment.required_approvals:
        expires = deployment.expires_at or now + timedelta(seconds=rules.approval_timeout_s)
        if now >= expires:
            reason = (
                f"no approval within {_duration(rules.approval_timeout_s)}: {have} of "
                f"{deployment.required_approvals} required approvals were given"
            )
            failed = dataclasses.replace(deployment, status="failed", reason=reason, finished_at=now)
            return failed, StageMove(
                StageStatus.FAILED, {"failure_reason": reason, "failure_kind": REFUSED_KIND}
            )
        missing = deployment.required_approvals - have
        reason = (
            f"waiting for {_plural(missing, 'more approval')} ({have} of {deployment.required_approvals})"
        )
        waiting = dataclasses.replace(deployment, reason=reason, expires_at=expires)
        gate = (
            None if stage.status is StageStatus.WAITING_APPROVAL else StageMove(StageStatus.WAITING_APPROVAL)
        )
        return waiting, gate
    if rules.wait_timer_s > 0:
        until = deployment.wait_until or now + timedelta(seconds=rules.wait_timer_s)
        if now < until:
            reason = f"wait timer: may deploy from {until.isoformat()}"
            return dataclasses.replace(deployment, reason=reason, wait_until=until), None
        deployment = dataclasses.replace(deployment, wait_until=until)
    reason = f"waiting for environment {deployment.environment} to be free"
    return dataclasses.replace(deployment, reason=reason, ready_at=deployment.ready_at or now), None


def review_refusal(
    state: RunState, deployment: DeploymentState | None, user_id: str, decision: str
) -> str | None:
    """Why a review does not apply (the API refuses the same cases first, with a 4xx)."""
    if deployment is None:
        return "the run has no such deployment"
    if deployment.status != "waiting":
        return f"deployment {deployment.id} is {deployment.status}"
    stage = state.stages.get(deployment.stage)
    awaiting = stage is not None and stage.status is StageStatus.WAITING_APPROVAL
    if decision == "approved":
        if not awaiting or len(approved_by(deployment)) >= deployment.required_approvals:
            return f"deployment {deployment.id} is not waiting for approvals"
        if any(r.user_id == user_id for r in deployment.approvals):
            return f"{user_id} already reviewed deployment {deployment.id}"
        if not self_approval_allowed(deployment.allow_self_approval, deployment.required_approvals) and (
            str(deployment.triggered_by) == user_id
        ):
            return (
                f"{user_id} triggered the run and may not approve its deployment to {deployment.environment}"
            )
    return None


def self_approval_allowed(allow_self_approval: bool, required_approvals: int) -> bool:
    """Whether the person who triggered the run may approve its deployment: never when two or more
    approvals are required (CONTRACT §4), else as the environment says."""
    return allow_self_approval and required_approvals < 2


def reviewed(
    deployment: DeploymentState, stage: StageState, review: Review, reviewer: str, now: datetime
) -> tuple[DeploymentState, StageMove | None]:
    """Apply an approval (then hold it as far as the rules say) or a rejection (it ends)."""
    with_review = dataclasses.replace(deployment, approvals=(*deployment.approvals, review))
    if review.decision == "approved":
        return hold(with_review, stage, now)
    who = reviewer or review.user_id
    reason = f"deployment to {deployment.environment} rejected by {who}" + (
        f": {review.comment}" if review.comment else ""
    )
    rejected = dataclasses.replace(with_review, status="rejected", reason=reason, finished_at=now)
    return rejected, StageMove(StageStatus.FAILED, {"failure_reason": reason, "failure_kind": REFUSED_KIND})


def follow_stage(deployment: DeploymentState, stage: StageState | None, now: datetime) -> DeploymentState:
    """An open deployment follows its stage once it was let go: running, then its verdict; a
    waiting one ends only when its stage is cancelled (or fails before it deploys)."""
    if deployment.status in DEPLOYMENT_TERMINAL or stage is None:
        return deployment
    status = stage.status
    if status is StageStatus.QUEUED and deployment.status == "waiting":
        return dataclasses.replace(deployment, status="queued", reason=None)
    if status is StageStatus.RUNNING and deployment.status in ("waiting", "queued"):
        return dataclasses.replace(
            deployment, status="in_progress", reason=None, started_at=stage.started_at or now
        )
    if status is StageStatus.SUCCEEDED:
        return dataclasses.replace(
            deployment,
            status="succeeded",
            reason=None,
            started_at=deployment.started_at or stage.started_at or now,
            finished_at=stage.finished_at or now,
        )
    if status in (StageStatus.CANCELLED, StageStatus.SKIPPED):
        return dataclasses.replace(
            deployment, status="cancelled", reason=stage.failure_reason, finished_at=stage.finished_at or now
        )
    if status is StageStatus.FAILED:
        return dataclasses.replace(
            deployment,
            status="failed",
            reason=stage.failure_reason or f"stage {stage.name} failed",
            finished_at=stage.finished_at or now,
        )
    return deployment


def follow_stages(state: RunState, now: datetime) -> RunState:
    changed = {
        name: followed
        for name, deployment in state.deployments.items()
        if (followed := follow_stage(deployment, state.stages.get(name), now)) != deployment
    }
    if not changed:
        return state
    return dataclasses.replace(state, deployments={**state.deployments, **changed})


def status_changes(before: RunState, after: RunState, now: datetime) -> list[DeploymentStatusChanged]:
    """A `deployment.status_changed` for every deployment created or moved by a decision."""
    events = []
    for name, deployment in after.deployments.items():
        old = before.deployments.get(name)
        previous = old.status if old is not None and old.id == deployment.id else None
        if previous == deployment.status:
            continue
        events.append(
            DeploymentStatusChanged(
                deployment_id=deployment.id,
                project_id=after.project_id,
                run_id=after.id,
                stage=deployment.stage,
                environment=deployment.environment,
                status=deployment.status,
                previous=previous,
                sha=deployment.sha,
                ref=deployment.ref,
                url=deployment.url,
                rollback_of=deployment.rollback_of,
                triggered_by=deployment.triggered_by,
                at=now,
                reason=deployment.reason,
                approvals=[r.row() for r in deployment.approvals],
                started_at=deployment.started_at,
                finished_at=deployment.finished_at,
            )
        )
    return events


# -- planning ------------------------------------------------------------------------------------
def environments_of(plan: Planned) -> set[str]:
    return {str(s.spec["environment"]) for s in plan.stages if s.spec.get("environment")}


def with_rules(plan: Planned, rules: Mapping[str, Rules]) -> Planned:
    """The plan with each deploying stage's environment rules in its spec (`deploy_rules`): the
    snapshot `decide()` applies, kept with the stage."""
    stages = tuple(
        dataclasses.replace(s, spec={**s.spec, "deploy_rules": rules[str(s.spec["environment"])].spec()})
        if s.spec.get("environment") and str(s.spec["environment"]) in rules
        else s
        for s in plan.stages
    )
    return dataclasses.replace(plan, stages=stages)


def rollback_plan(plan: Planned | PlanFailed, trigger: Mapping[str, Any]) -> Planned | PlanFailed:
    """A rollback run holds only the earlier deployment's environment stage(s), re-run at its sha
    without what they needed (that ran when it first deployed); other plans are left as they are."""
    if trigger.get("kind") != "rollback" or isinstance(plan, PlanFailed):
        return plan
    names = [str(n) for n in trigger.get("stages") or ()]
    keep = [s for s in plan.stages if s.name in names and s.spec.get("environment")]
    if not keep:
        return PlanFailed(
            f"cannot roll back: .comet.yml at {plan.sha[:12]} has no deploying stage {', '.join(names) or '(none)'}",
            sha=plan.sha,
        )
    return dataclasses.replace(plan, stages=tuple(dataclasses.replace(s, needs=()) for s in keep))
