"""Users as the API shows them (never with a password hash), and what admins send to manage them."""

from __future__ import annotations

import re
import uuid

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from schemas.api.auth import MAX_PASSWORD_CHARS

# Deliberately loose (one @, a dot in the domain, no spaces): deliverability is the mail server's job.
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


def _email(value: str) -> str:
    value = value.strip()
    if not _EMAIL.match(value):
        raise ValueError("is not an e-mail address")
    return value


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    display_name: str | None
    is_admin: bool
    is_active: bool
    email_verified: bool = False
    created_at: AwareDatetime
    last_login_at: AwareDatetime | None


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=320, examples=["dev@example.com"])
    password: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_PASSWORD_CHARS,
        description="Omit for a user who only logs in with GitHub, GitLab or Bitbucket.",
    )
    display_name: str | None = Field(default=None, max_length=200)
    is_admin: bool = False

    @field_validator("email")
    @classmethod
    def _check_email(cls, value: str) -> str:
        return _email(value)


class UserUpdate(BaseModel):
    """Only the fields sent change. Changing the password or deactivating ends the user's sessions."""

    model_config = ConfigDict(extra="forbid")

    email: str | None = Field(default=None, max_length=320)
    password: str | None = Field(default=None, min_length=1, max_length=MAX_PASSWORD_CHARS)
    display_name: str | None = Field(default=None, max_length=200)
    is_admin: bool | None = None
    is_active: bool | None = None

    @field_validator("email")
    @classmethod
    def _check_email(cls, value: str | None) -> str | None:
        return None if value is None else _email(value)


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=MAX_PASSWORD_CHARS)
    new_password: str = Field(min_length=1, max_length=MAX_PASSWORD_CHARS)
