"""Public shapes of project secrets: values go in, only names come out."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,99}$"


class SecretPut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: str = Field(min_length=1, max_length=64 * 1024)


class SecretList(BaseModel):
    data: list[str]
    next_cursor: str | None = None
