"""Runs as the API takes and shows them: the trigger request (with ref, sha and variable rules),
the accepted answer, the run with its stages and attempts, and its event history."""

from __future__ import annotations

import re
import uuid
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from schemas.api.tests import ResultSummary
from schemas.states import AttemptStatus, RunStatus, StageStatus

MAX_VARIABLES = 100
MAX_VARIABLE_BYTES = 64 * 1024
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SHA = re.compile(r"^[0-9a-fA-F]{7,64}$")
# What git check-ref-format refuses, and what would be dangerous on a command line.
_FORBIDDEN_REF_CHARS = frozenset("~^:?*[\\")


def normalise_ref(value: str) -> str:
    """`main` -> `refs/heads/main`; full `refs/heads/…` and `refs/tags/…` pass as they are.

    Raises ValueError with the reason for anything git would refuse or that could be read as an
    option or a revision expression.
    """
    if not value:
        raise ValueError("must not be empty")
    if len(value) > 255:
        raise ValueError("must be at most 255 characters")
    if value.startswith("-"):
        raise ValueError("must not start with '-'")
    if any(ord(c) < 33 or ord(c) == 127 for c in value):
        raise ValueError("must not contain spaces or control characters")
    bad = sorted(_FORBIDDEN_REF_CHARS.intersection(value))
    if bad:
        raise ValueError(f"must not contain {' '.join(repr(c) for c in bad)}")
    if ".." in value or "@{" in value or "//" in value or value == "@":
        raise ValueError("must not contain '..', '@{' or '//', nor be '@'")
    if value.endswith(("/", ".", ".lock")) or value.startswith("/"):
        raise ValueError("must not start with '/' nor end with '/', '.' or '.lock'")
    if any(part.startswith(".") for part in value.split("/")):
        raise ValueError("no path component may start with '.'")
    if value.startswith("refs/"):
        for prefix in ("refs/heads/", "refs/tags/"):
            if value.startswith(prefix) and len(value) > len(prefix):
                return value
        raise ValueError("a full ref must be refs/heads/<branch> or refs/tags/<tag>")
    return f"refs/heads/{value}"


def check_variables(variables: dict[str, str]) -> dict[str, str]:
    """Names like environment variables (not COMET_*, which Comet sets), values at most 64 KiB."""
    if len(variables) > MAX_VARIABLES:
        raise ValueError(f"at most {MAX_VARIABLES} variables")
    for name, value in variables.items():
        if not _VARIABLE_NAME.match(name):
            raise ValueError(f"variable name {name!r} must match ^[A-Za-z_][A-Za-z0-9_]*$")
        if name.upper().startswith("COMET_"):
            raise ValueError(f"variable name {name!r} is reserved: COMET_* variables are set by Comet")
        if "\x00" in value:
            raise ValueError(f"variable {name} must not contain NUL characters")
        if len(value.encode()) > MAX_VARIABLE_BYTES:
            raise ValueError(f"variable {name} is longer than {MAX_VARIABLE_BYTES} bytes")
    return variables


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ref: str = Field(
        description="A branch (`main`, normalised to `refs/heads/main`), `refs/heads/…` or `refs/tags/…`.",
        examples=["main"],
    )
    sha: str | None = Field(
        default=None, description="Commit to build (7 to 64 hex digits); default: the ref's tip."
    )
    variables: dict[str, str] = Field(
        default_factory=dict, description="Extra environment variables for every stage of this run."
    )

    @field_validator("ref")
    @classmethod
    def _ref(cls, value: str) -> str:
        return normalise_ref(value)

    @field_validator("sha")
    @classmethod
    def _sha(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _SHA.match(value):
            raise ValueError("must be 7 to 64 hexadecimal digits")
        return value.lower()

    @field_validator("variables")
    @classmethod
    def _variables(cls, value: dict[str, str]) -> dict[str, str]:
        return check_variables(value)


class RunAccepted(BaseModel):
    run_id: uuid.UUID
    status: Literal["requested"] = "requested"
    project_id: uuid.UUID
    number: int
    ref: str
    sha: str | None
    url: str = Field(description="Where to follow the run.")


class AttemptOut(BaseModel):
    number: int
    status: AttemptStatus
    worker_id: str | None
    exit_code: int | None
    failure_kind: str | None
    failure_reason: str | None
    queued_at: AwareDatetime | None
    started_at: AwareDatetime | None
    finished_at: AwareDatetime | None


class StageOut(BaseModel):
    name: str
    status: StageStatus
    attempt: int = Field(description="The current attempt's number (0: not dispatched yet).")
    worker_id: str | None = Field(description="The worker of the current attempt.")
    exit_code: int | None
    failure_kind: str | None
    failure_reason: str | None
    note: str | None = Field(
        default=None,
        description="Why the stage ended as it did when its exit code alone does not say (e.g. it succeeded although its failing tests are all quarantined).",
    )
    needs: list[str]
    pool: str
    matrix: dict[str, str]
    queued_at: AwareDatetime | None
    started_at: AwareDatetime | None
    finished_at: AwareDatetime | None
    attempts: list[AttemptOut]
    tests: ResultSummary | None = Field(
        default=None, description="The current attempt's test summary (null: no test reports)."
    )


class RunSummary(BaseModel):
    id: uuid.UUID
    project_id: uuid.UUID
    number: int
    status: RunStatus
    ref: str
    sha: str | None
    trigger: dict[str, Any]
    pipeline_name: str | None
    failure_reason: str | None
    retries: int
    cancel_requested_at: AwareDatetime | None
    created_at: AwareDatetime
    queued_at: AwareDatetime | None
    started_at: AwareDatetime | None
    finished_at: AwareDatetime | None


class RunDeadLetterOut(BaseModel):
    """An event of this run that its consumer could not apply and set aside (see `comet dlq`)."""

    id: uuid.UUID
    consumer: str
    event_id: uuid.UUID | None
    event_type: str | None
    reason: str
    created_at: AwareDatetime
    redriven_at: AwareDatetime | None


class RunOut(RunSummary):
    stages: list[StageOut]
    tests: ResultSummary | None = Field(
        default=None,
        description="The test summary of the stages' current attempts, as `GET /runs/{id}/tests` "
        "sums it (null: no stage has test reports).",
    )
    dead_letters: list[RunDeadLetterOut] = Field(
        default_factory=list,
        description="Events of this run set aside as poison (a consumer kept failing on them), with "
        "the reason: why the run may have stopped moving.",
    )


class RunCommandAccepted(BaseModel):
    run_id: uuid.UUID
    status: RunStatus = Field(description="The run's status when the request was recorded.")
    requested: Literal["cancel", "retry", "approve"]
    event_id: uuid.UUID = Field(description="The event that carries the request to the orchestrator.")


class RunEventOut(BaseModel):
    seq: int = Field(description="Position in Comet's event log; increasing.")
    event_id: uuid.UUID
    type: str
    topic: str
    key: str
    occurred_at: AwareDatetime
    correlation_id: str
    causation_id: str | None
    schema_version: int
    payload: dict[str, Any]
    published_at: AwareDatetime | None = Field(description="When the relay put it on Kafka (null: not yet).")
