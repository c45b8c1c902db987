"""Test suites and schedules as the API takes and shows them.

A test suite names which stages of the project's `.comet.yml` to run (names or globs), on which
ref, with which variables, and optionally on a schedule (`cron` in an IANA `timezone`). Invalid
cron expressions and zones are refused with the field named and the reason of `schemas/cron.py`.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from schemas.api.runs import check_variables, normalise_ref
from schemas.cron import ScheduleError, check_cron, check_timezone
from schemas.globs import check_glob

MAX_SUITE_STAGES = 100
_SUITE_NAME = r"^[^\x00-\x1f\x7f]+$"  # any printable text: it names the suite's schedule too


def _cron(value: str) -> str:
    try:
        return check_cron(value)
    except ScheduleError as exc:
        raise ValueError(exc.message) from None


def _timezone(value: str) -> str:
    try:
        check_timezone(value)
    except ScheduleError as exc:
        raise ValueError(exc.message) from None
    return value


def _stages(value: list[str]) -> list[str]:
    """Non-empty names or globs (each a valid glob), duplicates dropped, order kept."""
    if not value:
        raise ValueError("name at least one stage (a name or a glob such as 'unit*')")
    for entry in value:
        if not entry.strip():
            raise ValueError("stage names must not be empty")
        try:
            check_glob(entry)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
    return list(dict.fromkeys(value))


def _ref(value: str | None) -> str | None:
    return None if value is None else normalise_ref(value)


SuiteName = Annotated[str, Field(min_length=1, max_length=200, pattern=_SUITE_NAME)]
SuiteStages = Annotated[
    list[Annotated[str, Field(max_length=300)]],
    Field(max_length=MAX_SUITE_STAGES),
    AfterValidator(_stages),
]
SuiteRef = Annotated[
    str | None,
    Field(
        max_length=255,
        description="A branch (`main`, normalised to `refs/heads/main`), `refs/heads/…` or "
        "`refs/tags/…`; default: the project's default branch.",
    ),
    AfterValidator(_ref),
]


class ScheduleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cron: Annotated[str, Field(max_length=200, examples=["0 3 * * *"]), AfterValidator(_cron)] = Field(
        description="Five fields: minute hour day-of-month month day-of-week (or @daily, @hourly, …)."
    )
    timezone: Annotated[str, Field(max_length=64), AfterValidator(_timezone)] = Field(
        default="UTC", description="An IANA time zone, e.g. Europe/Berlin."
    )


class TestSuiteCreate(BaseModel):
    __test__ = False  # not a pytest class
    model_config = ConfigDict(extra="forbid")

    name: SuiteName
    stages: SuiteStages = Field(description="Stage names or globs: a base name selects every leg.")
    ref: SuiteRef = None
    variables: dict[str, str] = Field(default_factory=dict, description="Extra variables for its runs.")
    schedule: ScheduleSpec | None = Field(default=None, description="Run the suite on this schedule.")

    @field_validator("variables")
    @classmethod
    def _variables(cls, value: dict[str, str]) -> dict[str, str]:
        return check_variables(value)


class TestSuiteUpdate(BaseModel):
    """Only the fields sent change; `schedule: null` removes the schedule."""

    __test__ = False
    model_config = ConfigDict(extra="forbid")

    name: SuiteName | None = None
    stages: SuiteStages | None = None
    ref: SuiteRef = None
    variables: dict[str, str] | None = None
    schedule: ScheduleSpec | None = None

    @field_validator("variables")
    @classmethod
    def _variables(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return None if value is None else check_variables(value)


class SuiteScheduleOut(BaseModel):
    cron: str
    timezone: str
    next_fire_at: AwareDatetime | None


class TestSuiteOut(BaseModel):
    __test__ = False

    id: uuid.UUID
    project_id: uuid.UUID
    name: str
    stages: list[str]
    ref: str
    variables: dict[str, str]
    schedule: SuiteScheduleOut | None
    created_by: uuid.UUID | None
    created_at: AwareDatetime
    updated_at: AwareDatetime


class SuiteRunCreate(BaseModel):
    """Optional: a commit to test (default: the ref's tip) and variables over the suite's own."""

    model_config = ConfigDict(extra="forbid")

    sha: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{7,64}$", description="7 to 64 hex digits.")
    variables: dict[str, str] = Field(default_factory=dict)

    @field_validator("sha")
    @classmethod
    def _sha(cls, value: str | None) -> str | None:
        return None if value is None else value.lower()

    @field_validator("variables")
    @classmethod
    def _variables(cls, value: dict[str, str]) -> dict[str, str]:
        return check_variables(value)


class ScheduleOut(BaseModel):
    source: Literal["pipeline", "test_suite"]
    name: str = Field(
        description="A suite's name; for a pipeline schedule, what it fires: `<cron> <timezone> <ref>`."
    )
    cron: str
    timezone: str
    ref: str
    next_fire_at: AwareDatetime | None = Field(description="The next tick, in UTC (null: never).")
    last_tick_at: AwareDatetime | None = Field(description="The last tick fired.")
    suite_id: uuid.UUID | None
