"""JWT access tokens: issued at login, refresh and OAuth login, verified on every request.

One pinned algorithm, HS256, both ways: a token whose header names anything else (`none`, RS256,
HS512) is refused before any key is touched, so an algorithm confusion cannot pass. Every
registered claim is required (`exp iat nbf iss aud sub typ jti`, plus `sid`, the session that
makes the token revocable), `typ` must be `access`, and a small leeway absorbs clock skew.

Keys rotate: each key has a `kid` (a short hash of the key, so the id names the key without
revealing it). The current key signs; previous keys (`COMET_JWT_PREVIOUS_SECRETS`, or the extra
lines of `COMET_JWT_SECRET_FILE`) only verify, and may be dropped once the tokens they signed have
expired (the access-token lifetime, at most 15 minutes, after the rotation). A token naming an
unknown `kid`, or none, is refused.

Every failure is the same `Unauthorized` to the client; the reason goes to the debug log.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import uuid
from collections.abc import Mapping
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
REQUIRED_CLAIMS = ("iss", "aud", "sub", "iat", "nbf", "exp", "jti", "typ", "sid")
INVALID_TOKEN = "The access token is invalid or has expired."  # noqa: S105 - a message
REFRESH_PREFIX = "cmr_"


def key_id(secret: str) -> str:
    """The `kid` of a signing key: 16 hex digits of a SHA-256 over it (names it, reveals nothing)."""
    return hashlib.sha256(b"comet-jwt-kid\x00" + secret.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The signing key (`current_kid`) and every key that verifies, by kid."""

    current_kid: str
    keys: Mapping[str, str]

    @property
    def signing_key(self) -> str:
        return self.keys[self.current_kid]


@functools.lru_cache(maxsize=16)
def _ring(current: str, previous: tuple[str, ...]) -> KeyRing:
    keys = {key_id(k): k for k in previous}
    keys[key_id(current)] = current
    return KeyRing(key_id(current), keys)


def key_ring(settings: ApiSettings) -> KeyRing:
    return _ring(settings.jwt_secret.get_secret_value(), tuple(settings.jwt_verification_keys()))


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    token_id: str
    issued_at: datetime
    expires_at: datetime
    session_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_in: int
    claims: AccessClaims


def issue_access_token(
    settings: ApiSettings,
    user_id: uuid.UUID,
    *,
    session_id: uuid.UUID,
    now: datetime | None = None,
) -> IssuedToken:
    """A signed access token for `user_id` in `session_id`, valid for `access_token_ttl_s`."""
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
        "sid": str(session_id),
    }
    ring = key_ring(settings)
    token = jwt.encode(claims, ring.signing_key, algorithm=ALGORITHM, headers={"kid": ring.current_kid})
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
        header = jwt.get_unverified_header(token)
        if header.get("alg") != ALGORITHM:
            raise jwt.InvalidAlgorithmError(f"alg {header.get('alg')!r} is not {ALGORITHM}")
        kid = header.get("kid")
        key = key_ring(settings).keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise jwt.InvalidKeyError("unknown or missing kid")
        payload = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=LEEWAY_S,
            options={"require": list(REQUIRED_CLAIMS)},
        )
        return _claims(payload)
    except (jwt.PyJWTError, ValueError, TypeError, KeyError, OverflowError) as exc:
        log.debug("access token refused", reason=type(exc).__name__)
        raise Unauthorized(INVALID_TOKEN) from None


def _claims(payload: dict[str, Any]) -> AccessClaims:
    if payload.get("typ") != ACCESS_TYPE:
        raise jwt.InvalidTokenError("typ is not 'access'")
    if not isinstance(payload["jti"], str) or not payload["jti"]:
        raise jwt.InvalidTokenError("jti is not a string")
    return AccessClaims(
        user_id=uuid.UUID(payload["sub"]),
        token_id=payload["jti"],
        issued_at=datetime.fromtimestamp(payload["iat"], UTC),
        expires_at=datetime.fromtimestamp(payload["exp"], UTC),
        session_id=uuid.UUID(payload["sid"]),
    )


# -- refresh tokens: opaque, random, stored only as their SHA-256 ----------------------------------
def new_refresh_token() -> tuple[str, str]:
    """A fresh refresh token (`cmr_` + 32 random bytes, url-safe) and the hash to store."""
    token = REFRESH_PREFIX + secrets.token_urlsafe(32)
    return token, refresh_token_hash(token)


def refresh_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
