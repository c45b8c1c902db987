"""Login, refresh and logout: what clients send and the token pair they get back."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_PASSWORD_CHARS = 1024


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=320, examples=["admin@example.com"])
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_CHARS)


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=16, max_length=200)


class LogoutRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str | None = Field(
        default=None,
        min_length=16,
        max_length=200,
        description="Revoke this session too (the access token's own session is always revoked).",
    )


class TokenPair(BaseModel):
    access_token: str = Field(description="A short-lived JWT; send it as `Authorization: Bearer …`.")
    refresh_token: str = Field(description="Opaque, single use: trade it at /auth/refresh for a new pair.")
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth 2 token type, not a secret
    expires_in: int = Field(description="Seconds until the access token expires.")
