"""Public shapes of environments (their protection rules, current deployment and line) and
deployments (with their reviews), reviews and rollbacks (decision 0027)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from schemas.durations import parse_duration
from schemas.globs import check_glob

MAX_WAIT_TIMER_S = 30 * 24 * 3600.0


def _seconds(value: object) -> object:
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
    return value


class EnvironmentPut(BaseModel):
    """An environment's protection rules (the whole set: what is left out takes its default)."""

    model_config = ConfigDict(extra="forbid")
    required_approvals: int = Field(
        default=0, ge=0, le=5, description="Approvals from distinct people before a deployment goes (0–5)."
    )
    allow_self_approval: bool = Field(
        default=True,
        description="Whether the person who triggered the run may be one of its approvers; never when two or "
        "more approvals are required.",
    )
    branches: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default=[],
        max_length=50,
        description="Globs of the branches that may deploy here (`main`, `release/*`); empty: any ref.",
    )
    wait_timer: Annotated[
        float, BeforeValidator(_seconds, json_schema_input_type=str | float), Field(ge=0, le=MAX_WAIT_TIMER_S)
    ] = Field(
        default=0.0, description="Wait this long after the approvals before deploying: `10m`, or seconds."
    )

    @field_validator("branches")
    @classmethod
    def _globs(cls, branches: list[str]) -> list[str]:
        for pattern in branches:
            check_glob(pattern)
        return list(dict.fromkeys(branches))


class ApprovalOut(BaseModel):
    user_id: uuid.UUID
    decision: Literal["approved", "rejected"]
    comment: str
    at: datetime


DeploymentStatusOut = Literal[
    "waiting", "queued", "in_progress", "succeeded", "failed", "cancelled", "rejected"
]


class DeploymentOut(BaseModel):
    id: uuid.UUID
    project_id: uuid.UUID
    environment: str
    status: DeploymentStatusOut
    reason: str | None = Field(description="Why it waits, or why it was refused or failed.")
    sha: str | None
    ref: str
    run_id: uuid.UUID
    stage: str
    url: str | None
    rollback_of: uuid.UUID | None
    triggered_by: uuid.UUID | None
    required_approvals: int
    approvals: list[ApprovalOut]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class EnvironmentOut(BaseModel):
    name: str
    configured: bool = Field(description="False: deployed to with the default rules, never configured.")
    required_approvals: int
    allow_self_approval: bool
    branches: list[str]
    wait_timer: float = Field(description="Seconds.")
    current: DeploymentOut | None = Field(
        description="The deployment in progress, else the last successful one (what runs there)."
    )
    waiting: list[DeploymentOut] = Field(
        description="Deployments waiting for it, in line order, with reasons."
    )
    updated_at: datetime | None = None


class EnvironmentList(BaseModel):
    data: list[EnvironmentOut]


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str = Field(default="", max_length=2000)


class ReviewAccepted(BaseModel):
    deployment_id: uuid.UUID
    run_id: uuid.UUID
    decision: Literal["approved", "rejected"]
    event_id: uuid.UUID


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    deployment_id: uuid.UUID = Field(description="An earlier successful deployment to this environment.")


class RollbackAccepted(BaseModel):
    run_id: uuid.UUID
    number: int
    rollback_of: uuid.UUID
    environment: str
    stage: str
    sha: str
    ref: str
    url: str
