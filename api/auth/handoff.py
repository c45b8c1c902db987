"""The dashboard's OAuth hand-off (decision 0032): a sign-in the dashboard started ends with a
redirect to `/ui/#/signin?code=…` carrying a one-time code, never a token.

The code is `<row id>.<secret>`: the row holds only the secret's SHA-256, compared in constant
time. It is valid 60 s and spent by one UPDATE that succeeds once; the exchange then gives the
session the callback opened a fresh refresh token, so the token pair exists only in the answer to
`POST /auth/oauth/exchange`. Presenting a spent code again revokes that session (RFC 6749 §4.1.2:
a code used twice was probably stolen). The code rides in the URL's fragment, which browsers
send neither to servers nor in a Referer.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AuthSession
from db.repositories import auth_sessions, oauth_handoffs
from schemas.ids import uuid7

HANDOFF_TTL_S = 60
REUSE_REASON = "oauth hand-off code reused"


class HandoffError(Exception):
    """The code cannot be exchanged; `status` is what the API answers, `detail` says why."""

    def __init__(self, status: int, detail: str, session_id: uuid.UUID | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.session_id = session_id


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _parse(code: str) -> tuple[uuid.UUID, str] | None:
    head, dot, secret = code.partition(".")
    if not dot or not secret:
        return None
    try:
        return uuid.UUID(hex=head), secret
    except ValueError:
        return None


async def issue(session: AsyncSession, session_id: uuid.UUID, *, now: datetime) -> str:
    """A new code for the (not yet committed) session `session_id`; the caller commits."""
    handoff_id, secret = uuid7(), secrets.token_urlsafe(32)
    await oauth_handoffs.create(
        session,
        handoff_id=handoff_id,
        session_id=session_id,
        code_hash=_hash(secret),
        expires_at=now + timedelta(seconds=HANDOFF_TTL_S),
    )
    return f"{handoff_id.hex}.{secret}"


@dataclass(frozen=True, slots=True)
class Redeemed:
    auth_session: AuthSession
    refresh_token: str


async def redeem(
    session: AsyncSession, code: str, *, new_refresh: tuple[str, str], now: datetime
) -> Redeemed:
    """Spend `code` and hand its session over with the refresh token `new_refresh` (token, hash).

    HandoffError: 400 unknown or forged, 409 already used (its session is revoked, not committed),
    410 expired, 401 the session ended or its user was disabled since.
    """
    parsed = _parse(code)
    row = await oauth_handoffs.get(session, parsed[0]) if parsed else None
    if parsed is None or row is None or not hmac.compare_digest(row.code_hash, _hash(parsed[1])):
        raise HandoffError(400, "The sign-in code is not valid; sign in again.")
    session_id = await oauth_handoffs.spend(session, row.id, now=now)
    if session_id is None:
        await session.refresh(row)
        if row.used_at is not None:
            owner = await session.get(AuthSession, row.session_id)
            if owner is not None:
                await auth_sessions.revoke(
                    session, user_id=owner.user_id, session_id=owner.id, now=now, reason=REUSE_REASON
                )
            raise HandoffError(
                409,
                "The sign-in code was already used; the session it opened is now revoked. Sign in again.",
                row.session_id,
            )
        raise HandoffError(
            410,
            f"The sign-in code has expired (it is valid {HANDOFF_TTL_S} s); sign in again.",
            row.session_id,
        )
    token, token_hash = new_refresh
    handed = await oauth_handoffs.hand_over(session, session_id, new_hash=token_hash, now=now)
    if handed is None:
        raise HandoffError(401, "The session this code opened has ended; sign in again.", session_id)
    return Redeemed(handed, token)
