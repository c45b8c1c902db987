"""JWT access tokens: issued at login and refresh, verified on every authenticated request.

HS256 only (the algorithm is pinned both ways, so `none` or an RSA-for-HMAC confusion cannot
pass), every registered claim required, `typ` must be `access`, and a small leeway for clock
skew. Every failure is the same `Unauthorized` to the client; the reason goes to the debug log.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
import structlog

from api.errors import Unauthorized
from config.settings import ApiSettings

log = structlog.get_logger(__name__)

ALGORITHM = "HS256"
ACCESS_TYPE = "access"
LEEWAY_S = 5
REQUIRED_CLAIMS = ("iss", "aud", "sub", "iat", "nbf", "exp", "jti", "typ")
INVALID_TOKEN = "The access token is invalid or has expired."  # noqa: S105 - a message


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    token_id: str
    issued_at: datetime
    expires_at: datetime
    session_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_in: int
    claims: AccessClaims


def issue_access_token(
    settings: ApiSettings,
    user_id: uuid.UUID,
    *,
    session_id: uuid.UUID | None = None,
    now: datetime | None = None,
) -> IssuedToken:
    """A signed access token for `user_id`, valid for `access_token_ttl_s` from `now`."""
    issued = int((now or datetime.now(UTC)).timestamp())
    ttl = int(settings.access_token_ttl_s)
    token_id = str(uuid.uuid4())
    claims: dict[str, object] = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(user_id),
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl,
        "jti": token_id,
        "typ": ACCESS_TYPE,
    }
    if session_id is not None:
        claims["sid"] = str(session_id)
    token = jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=ALGORITHM)
    return IssuedToken(
        token,
        ttl,
        AccessClaims(
            user_id,
            token_id,
            datetime.fromtimestamp(issued, UTC),
            datetime.fromtimestamp(issued + ttl, UTC),
            session_id,
        ),
    )


def verify_access_token(settings: ApiSettings, token: str) -> AccessClaims:
    """The claims of a valid access token; `Unauthorized` (generic detail) for anything else."""
    try:
        payload = jwt.decode(
            token,
            settings.jwt_secret.get_secret_value(),
            algorithms=[ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=LEEWAY_S,
            options={"require": list(REQUIRED_CLAIMS)},
        )
        return _claims(payload)
    except (jwt.InvalidTokenError, ValueError, TypeError, KeyError, OverflowError) as exc:
        log.debug("access token refused", reason=repr(exc))
        raise Unauthorized(INVALID_TOKEN) from None


def _claims(payload: dict[str, Any]) -> AccessClaims:
    if payload.get("typ") != ACCESS_TYPE:
        raise jwt.InvalidTokenError("typ is not 'access'")
    sid = payload.get("sid")
    return AccessClaims(
        user_id=uuid.UUID(payload["sub"]),
        token_id=str(payload["jti"]),
        issued_at=datetime.fromtimestamp(payload["iat"], UTC),
        expires_at=datetime.fromtimestamp(payload["exp"], UTC),
        session_id=uuid.UUID(sid) if isinstance(sid, str) else None,
    )


# -- refresh tokens: opaque, random, stored only as their SHA-256 ----------------------------------
def new_refresh_token() -> tuple[str, str]:
    """A fresh refresh token (`cmr_` + 32 random bytes, url-safe) and the hash to store."""
    token = "cmr_" + secrets.token_urlsafe(32)
    return token, refresh_token_hash(token)


def refresh_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
