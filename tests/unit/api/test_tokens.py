"""Access tokens: what is accepted, every way a forged or stale token is refused, and key rotation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from api.auth.tokens import (
    INVALID_TOKEN,
    issue_access_token,
    key_id,
    new_refresh_token,
    refresh_token_hash,
    verify_access_token,
)
from api.errors import Unauthorized
from config.settings import ApiSettings

SECRET = "s" * 64  # long enough for the HS512 forgery test too
OLD_SECRET = "o" * 64
SETTINGS = ApiSettings(jwt_secret=SECRET, secret_key="k" * 48)
KID = key_id(SECRET)
USER = uuid.uuid4()
SESSION = uuid.uuid4()


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
        "sid": str(SESSION),
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(claims: dict[str, Any], key: Any = SECRET, algorithm: str = "HS256", kid: str | None = KID) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def _b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _refused(token: str, settings: ApiSettings = SETTINGS) -> None:
    with pytest.raises(Unauthorized) as caught:
        verify_access_token(settings, token)
    assert caught.value.detail == INVALID_TOKEN
    assert caught.value.headers is not None
    assert caught.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_an_issued_token_verifies_to_its_user_and_session() -> None:
    issued = issue_access_token(SETTINGS, USER, session_id=SESSION)
    claims = verify_access_token(SETTINGS, issued.token)
    assert claims.user_id == USER
    assert claims.session_id == SESSION
    assert issued.expires_in == int(SETTINGS.access_token_ttl_s) <= 900
    assert (claims.expires_at - claims.issued_at).total_seconds() == issued.expires_in


def test_an_issued_token_carries_every_required_claim_hs256_and_the_key_id() -> None:
    token = issue_access_token(SETTINGS, USER, session_id=SESSION).token
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256"
    assert header["kid"] == KID
    payload = jwt.decode(token, options={"verify_signature": False})
    assert {"iss", "aud", "sub", "iat", "nbf", "exp", "jti", "typ", "sid"} <= payload.keys()
    assert payload["typ"] == "access"


def test_the_key_id_names_the_key_without_revealing_it() -> None:
    assert key_id(SECRET) == key_id(SECRET)
    assert key_id(SECRET) != key_id(OLD_SECRET)
    assert len(KID) == 16
    assert SECRET[:8] not in KID


def test_access_tokens_cannot_be_configured_to_live_longer_than_15_minutes() -> None:
    with pytest.raises(ValueError, match="15 minutes"):
        ApiSettings(jwt_secret=SECRET, secret_key="k" * 48, access_token_ttl_s="16m")


def test_alg_none_is_refused() -> None:
    _refused(f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': KID})}.{_b64(_claims())}.")


def test_another_hmac_algorithm_is_refused_even_with_the_right_key() -> None:
    _refused(_sign(_claims(), algorithm="HS512"))


def test_an_rsa_signed_token_is_refused() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _refused(_sign(_claims(), key=private, algorithm="RS256"))


def test_an_ecdsa_signed_token_is_refused() -> None:
    _refused(_sign(_claims(), key=ec.generate_private_key(ec.SECP256R1()), algorithm="ES256"))


def test_hmac_signed_with_a_public_key_as_the_secret_is_refused() -> None:
    """The classic confusion: the attacker signs HS256 with a public key the server might trust."""
    public_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = _b64({"alg": "HS256", "typ": "JWT", "kid": KID})
    body = _b64(_claims())
    signature = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    _refused(f"{header}.{body}.{_b64(signature)}")
    header_rs = _b64({"alg": "RS256", "typ": "JWT", "kid": KID})
    signature_rs = hmac.new(SECRET.encode(), f"{header_rs}.{body}".encode(), hashlib.sha256).digest()
    _refused(f"{header_rs}.{body}.{_b64(signature_rs)}")


def test_a_token_signed_with_another_key_is_refused() -> None:
    _refused(_sign(_claims(), key="x" * 64))


def test_a_tampered_payload_is_refused() -> None:
    header, _, signature = _sign(_claims()).split(".")
    forged = _b64(_claims(sub=str(uuid.uuid4())))
    _refused(f"{header}.{forged}.{signature}")


def test_a_tampered_signature_is_refused() -> None:
    header, body, signature = _sign(_claims()).split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    _refused(f"{header}.{body}.{flipped}")


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
    [
        {"aud": "someone-else"},
        {"iss": "not-comet"},
        {"typ": "refresh"},
        {"sub": "not-a-uuid"},
        {"sid": "not-a-uuid"},
        {"jti": 42},
    ],
    ids=["audience", "issuer", "type", "subject", "session", "jti"],
)
def test_a_token_for_another_audience_issuer_or_purpose_is_refused(overrides: dict[str, Any]) -> None:
    _refused(_sign(_claims(**overrides)))


@pytest.mark.parametrize("missing", ["iss", "aud", "sub", "iat", "nbf", "exp", "jti", "typ", "sid"])
def test_a_token_missing_a_required_claim_is_refused(missing: str) -> None:
    _refused(_sign(_claims(**{missing: None})))


def test_a_token_without_a_key_id_is_refused() -> None:
    _refused(_sign(_claims(), kid=None))


def test_a_token_naming_an_unknown_key_id_is_refused() -> None:
    _refused(_sign(_claims(), kid="0123456789abcdef"))


def test_a_token_naming_the_right_key_id_but_signed_with_another_key_is_refused() -> None:
    _refused(_sign(_claims(), key=OLD_SECRET, kid=KID))


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "Bearer x.y.z", "e30.e30.e30"])
def test_garbage_is_refused(garbage: str) -> None:
    _refused(garbage)


# -- key rotation -----------------------------------------------------------------------------
def test_after_rotation_the_new_key_signs_and_the_previous_key_still_verifies() -> None:
    before = ApiSettings(jwt_secret=OLD_SECRET, secret_key="k" * 48)
    after = ApiSettings(jwt_secret=SECRET, jwt_previous_secrets=OLD_SECRET, secret_key="k" * 48)
    old_token = issue_access_token(before, USER, session_id=SESSION).token
    new_token = issue_access_token(after, USER, session_id=SESSION).token
    assert jwt.get_unverified_header(new_token)["kid"] == key_id(SECRET)
    assert verify_access_token(after, old_token).user_id == USER
    assert verify_access_token(after, new_token).user_id == USER
    # The old deployment does not know the new key: a rollback must not accept forged kids.
    _refused(new_token, before)


def test_once_the_previous_key_is_dropped_its_tokens_are_refused() -> None:
    before = ApiSettings(jwt_secret=OLD_SECRET, secret_key="k" * 48)
    old_token = issue_access_token(before, USER, session_id=SESSION).token
    _refused(old_token, ApiSettings(jwt_secret=SECRET, secret_key="k" * 48))


@pytest.fixture
def no_jwt_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("COMET_JWT_SECRET", "COMET_JWT_PREVIOUS_SECRETS", "COMET_JWT_SECRET_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_jwt_environment")
def test_keys_can_come_from_a_key_file_current_first(tmp_path: Any) -> None:
    path = tmp_path / "jwt.keys"
    path.write_text(f"# current first, then previous\n{SECRET}\n{OLD_SECRET}\n")
    settings = ApiSettings(jwt_secret_file=path, secret_key="k" * 48)
    assert settings.jwt_secret.get_secret_value() == SECRET
    old_token = issue_access_token(
        ApiSettings(jwt_secret=OLD_SECRET, secret_key="k" * 48), USER, session_id=SESSION
    )
    assert verify_access_token(settings, old_token.token).user_id == USER
    assert (
        jwt.get_unverified_header(issue_access_token(settings, USER, session_id=SESSION).token)["kid"] == KID
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "COMET_JWT_SECRET: is required"),
        ({"jwt_secret": "short"}, "COMET_JWT_SECRET: must be at least 32"),
        ({"jwt_secret": SECRET, "jwt_previous_secrets": "short"}, "COMET_JWT_PREVIOUS_SECRETS: each key"),
        ({"jwt_secret_file": "/nonexistent/jwt.keys"}, "COMET_JWT_SECRET: cannot read the key file"),
    ],
)
@pytest.mark.usefixtures("no_jwt_environment")
def test_a_missing_or_weak_signing_key_stops_start_up_with_one_clear_line(
    values: dict[str, Any], message: str
) -> None:
    from config.settings import SettingsError, load

    with pytest.raises(SettingsError) as caught:
        load(ApiSettings, secret_key="k" * 48, **values)
    assert str(caught.value).startswith(message)


def test_refresh_tokens_are_random_and_only_their_hash_is_kept() -> None:
    token, token_hash = new_refresh_token()
    other, _ = new_refresh_token()
    assert token != other
    assert token_hash == refresh_token_hash(token)
    assert token not in token_hash
    assert len(token_hash) == 64
