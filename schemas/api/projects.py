"""Projects and memberships: create, update and public shapes.

Validation here is the API's first line: names are slugs, repository URLs are ones `git clone`
can take and cannot be mistaken for an option, and hosted providers name their repository.
"""

from __future__ import annotations

import re
import uuid
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from schemas.api.common import SHOWN_ONCE
from schemas.roles import Role

Provider = Literal["github", "gitlab", "bitbucket", "local"]
HOSTED_PROVIDERS = frozenset({"github", "gitlab", "bitbucket"})

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
_REPO_URL = re.compile(r"^(https?|ssh|git|file)://[^\s]+$|^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+$|^/[^\s]*$")
_PROVIDER_REPO = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$")
_BRANCH = re.compile(r"^[A-Za-z0-9._/-]{1,255}$")


def _repo_url(value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not contain control characters")
    if not _REPO_URL.match(value):
        raise ValueError(
            "must be an https://, http://, ssh://, git:// or file:// URL, user@host:path, or an absolute path"
        )
    return value


def _branch(value: str) -> str:
    if not _BRANCH.match(value) or value.startswith(("-", "/", ".")) or ".." in value or value.endswith("/"):
        raise ValueError("must be a plain branch name such as main or release/1.x")
    return value


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, examples=["demo"])
    repo_url: str = Field(max_length=2000, examples=["https://github.com/acme/demo.git"])
    default_branch: str = Field(default="main", max_length=255)
    provider: Provider = "local"
    provider_repo: str | None = Field(
        default=None,
        max_length=400,
        validate_default=True,
        description="`owner/name` on the provider; required for github, gitlab and bitbucket.",
        examples=["acme/demo"],
    )

    _check_url = field_validator("repo_url")(_repo_url)
    _check_branch = field_validator("default_branch")(_branch)

    @field_validator("provider_repo")
    @classmethod
    def _provider_repo(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            if info.data.get("provider") in HOSTED_PROVIDERS:
                raise ValueError("is required for github, gitlab and bitbucket projects")
            return None
        if not _PROVIDER_REPO.match(value):
            raise ValueError("must look like owner/name")
        return value


class ProjectUpdate(BaseModel):
    """Fields to change; those left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, pattern=NAME_PATTERN)
    repo_url: str | None = Field(default=None, max_length=2000)
    default_branch: str | None = Field(default=None, max_length=255)
    provider_repo: str | None = Field(default=None, max_length=400)
    auto_quarantine_flip_rate: float | None = Field(
        default=None,
        gt=0,
        le=1,
        strict=True,
        description="Quarantine a test automatically once its flip rate on the default branch "
        "reaches this fraction (0 < rate <= 1); null: only people quarantine.",
    )

    @field_validator("repo_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _repo_url(value)

    @field_validator("default_branch")
    @classmethod
    def _default_branch(cls, value: str | None) -> str | None:
        return None if value is None else _branch(value)

    @field_validator("provider_repo")
    @classmethod
    def _provider_repo(cls, value: str | None) -> str | None:
        if value is not None and not _PROVIDER_REPO.match(value):
            raise ValueError("must look like owner/name")
        return value


class ProjectOut(BaseModel):
    id: uuid.UUID
    name: str
    repo_url: str
    default_branch: str
    provider: str
    provider_repo: str | None
    role: Role = Field(description="Your role in this project (admins act as owner).")
    auto_quarantine_flip_rate: float | None = Field(
        default=None, description="The flip rate that quarantines a test automatically (null: off)."
    )
    created_at: AwareDatetime
    updated_at: AwareDatetime


class ProjectCreated(ProjectOut):
    webhook_secret: str | None = Field(
        description="The secret to configure on the provider's webhook. Shown this once; store it now. "
        "Null when this is a replayed answer (`Idempotent-Replayed: true`): rotate the secret to get "
        "a new one.",
        json_schema_extra={SHOWN_ONCE: True},
    )


class MemberUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role


class MemberOut(BaseModel):
    project_id: uuid.UUID
    user_id: uuid.UUID
    role: Role
