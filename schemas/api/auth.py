"""Login, refresh and logout: what clients send, the token pair they get back, and sessions."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

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


class SessionOut(BaseModel):
    """One login session (a refresh-token family) of the current user."""

    id: uuid.UUID
    method: str = Field(description="How it was opened: `password` or `oauth:<provider>`.")
    created_at: AwareDatetime
    last_refreshed_at: AwareDatetime | None
    expires_at: AwareDatetime
    user_agent: str | None
    client_ip: str | None
    current: bool = Field(description="Whether this is the session of the token making the request.")


class SessionList(BaseModel):
    data: list[SessionOut]


class OAuthProviderOut(BaseModel):
    """A provider this Comet can log in with (never its client id or secret)."""

    name: Literal["github", "gitlab", "bitbucket"] = Field(
        description="The `{provider}` of the OAuth routes."
    )
    label: str = Field(description="What to call it on a button, e.g. `GitHub`.")


class OAuthProviderList(BaseModel):
    data: list[OAuthProviderOut]


class OAuthExchangeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(
        min_length=10,
        max_length=200,
        description="The one-time code the OAuth callback put in the dashboard's URL (valid 60 s, single use).",
    )
