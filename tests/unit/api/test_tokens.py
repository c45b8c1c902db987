"""Access tokens: what is accepted, and every way a forged or stale token is refused."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from api.auth.tokens import (
    INVALID_TOKEN,
    issue_access_token,
    new_refresh_token,
    refresh_token_hash,
    verify_access_token,
)
from api.errors import Unauthorized
from config.settings import ApiSettings

SECRET = "s" * 64  # long enough for the HS512 forgery test too
SETTINGS = ApiSettings(jwt_secret=SECRET, secret_key="k" * 48)
USER = uuid.uuid4()


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(datetime.now(UTC).timestamp())
    claims: dict[str, Any] = {
        "iss": SETTINGS.jwt_issuer,
        "aud": SETTINGS.jwt_audience,
        "sub": str(USER),
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
        "typ": "access",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(claims: dict[str, Any], key: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def _refused(token: str) -> None:
    with pytest.raises(Unauthorized) as caught:
        verify_access_token(SETTINGS, token)
    assert caught.value.detail == INVALID_TOKEN
    assert caught.value.headers is not None
    assert caught.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_an_issued_token_verifies_to_its_user() -> None:
    session = uuid.uuid4()
    issued = issue_access_token(SETTINGS, USER, session_id=session)
    claims = verify_access_token(SETTINGS, issued.token)
    assert claims.user_id == USER
    assert claims.session_id == session
    assert issued.expires_in == int(SETTINGS.access_token_ttl_s) <= 900
    assert (claims.expires_at - claims.issued_at).total_seconds() == issued.expires_in


def test_an_issued_token_carries_every_required_claim_and_hs256() -> None:
    token = issue_access_token(SETTINGS, USER).token
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    payload = jwt.decode(token, options={"verify_signature": False})
    assert {"iss", "aud", "sub", "iat", "nbf", "exp", "jti", "typ"} <= payload.keys()
    assert payload["typ"] == "access"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_alg_none_is_refused() -> None:
    _refused(f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}.")


def test_another_algorithm_is_refused_even_with_the_right_key() -> None:
    _refused(_sign(_claims(), algorithm="HS512"))


def test_a_token_signed_with_another_key_is_refused() -> None:
    _refused(_sign(_claims(), key="o" * 64))


def test_a_tampered_payload_is_refused() -> None:
    header, _, signature = _sign(_claims()).split(".")
    forged = _b64(_claims(sub=str(uuid.uuid4())))
    _refused(f"{header}.{forged}.{signature}")


def test_an_expired_token_is_refused() -> None:
    past = int((datetime.now(UTC) - timedelta(minutes=10)).timestamp())
    _refused(_sign(_claims(iat=past - 60, nbf=past - 60, exp=past)))


def test_a_token_not_valid_yet_is_refused() -> None:
    future = int((datetime.now(UTC) + timedelta(minutes=5)).timestamp())
    _refused(_sign(_claims(nbf=future, exp=future + 300)))


def test_a_small_clock_skew_is_tolerated() -> None:
    soon = int(datetime.now(UTC).timestamp()) + 2
    assert verify_access_token(SETTINGS, _sign(_claims(nbf=soon, iat=soon))).user_id == USER


@pytest.mark.parametrize(
    "overrides",
    [{"aud": "someone-else"}, {"iss": "not-comet"}, {"typ": "refresh"}, {"sub": "not-a-uuid"}],
    ids=["audience", "issuer", "type", "subject"],
)
def test_a_token_for_another_audience_issuer_or_purpose_is_refused(overrides: dict[str, Any]) -> None:
    _refused(_sign(_claims(**overrides)))


@pytest.mark.parametrize("missing", ["iss", "aud", "sub", "iat", "nbf", "exp", "jti", "typ"])
def test_a_token_missing_a_required_claim_is_refused(missing: str) -> None:
    _refused(_sign(_claims(**{missing: None})))


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "Bearer x.y.z"])
def test_garbage_is_refused(garbage: str) -> None:
    _refused(garbage)


def test_refresh_tokens_are_random_and_only_their_hash_is_kept() -> None:
    token, token_hash = new_refresh_token()
    other, _ = new_refresh_token()
    assert token != other
    assert token_hash == refresh_token_hash(token)
    assert token not in token_hash
    assert len(token_hash) == 64
