"""Webhook signature and token checks: what is accepted, and every way a forged delivery is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import pytest

from api.webhooks.signatures import (
    VerifyResult,
    header_values,
    sign,
    verify_bitbucket,
    verify_github,
    verify_gitlab,
)

SECRET = b"s3cr3t-for-tests-only"
OTHER_SECRET = b"not-the-secret"
TOKEN = "gl-token-for-tests-only"
TOKEN_SHA = hashlib.sha256(TOKEN.encode()).hexdigest()
BODY = b'{"ref":"refs/heads/main","repository":{"full_name":"octo/hello"}}'
GOOD = sign(BODY, SECRET)
GOOD_HEX = GOOD.removeprefix("sha256=")
GH, BB, GL = "X-Hub-Signature-256", "X-Hub-Signature", "X-Gitlab-Token"

HmacVerifier = Callable[[bytes, Mapping[str, str], Sequence[bytes]], VerifyResult]


def _sha1(body: bytes, secret: bytes) -> str:
    return "sha1=" + hmac.new(secret, body, hashlib.sha1).hexdigest()


def _verify(provider: str, body: bytes, headers: Mapping[str, str]) -> VerifyResult:
    if provider == "github":
        return verify_github(body, headers, [SECRET])
    if provider == "bitbucket":
        return verify_bitbucket(body, headers, [SECRET])
    return verify_gitlab(headers, [TOKEN_SHA])


class MultiHeaders(Mapping[str, str]):
    """Like a framework's headers: `items()` repeats a name sent twice; lookups return the first."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs

    def __getitem__(self, key: str) -> str:
        return next(value for name, value in self._pairs if name.lower() == key.lower())

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        return list(self._pairs)


# --- accepted --------------------------------------------------------------------------------------


def test_githubs_documented_test_vector_is_accepted() -> None:
    secret = b"It's a Secret to Everybody"
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert sign(b"Hello, World!", secret) == expected
    result = verify_github(b"Hello, World!", {"X-Hub-Signature-256": expected}, [secret])
    assert result == VerifyResult(True, "signature matches")


@pytest.mark.parametrize("name", ["X-Hub-Signature-256", "x-hub-signature-256", "X-HUB-SIGNATURE-256"])
def test_github_header_name_is_case_insensitive(name: str) -> None:
    assert verify_github(BODY, {name: GOOD}, [SECRET]).ok


def test_github_accepts_sha256_when_the_legacy_sha1_header_is_sent_too() -> None:
    headers = {"X-Hub-Signature": _sha1(BODY, SECRET), "X-Hub-Signature-256": GOOD}
    assert verify_github(BODY, headers, [SECRET]).ok


@pytest.mark.parametrize("name", ["X-Hub-Signature", "x-hub-signature"])
def test_bitbucket_signature_is_accepted(name: str) -> None:
    assert verify_bitbucket(BODY, {name: GOOD}, [SECRET]) == VerifyResult(True, "signature matches")


@pytest.mark.parametrize("name", ["X-Gitlab-Token", "x-gitlab-token"])
def test_gitlab_token_is_accepted(name: str) -> None:
    assert verify_gitlab({name: TOKEN}, [TOKEN_SHA]) == VerifyResult(True, "token matches")


def test_gitlab_stored_digest_in_upper_case_still_matches() -> None:
    assert verify_gitlab({"X-Gitlab-Token": TOKEN}, [TOKEN_SHA.upper()]).ok


def test_empty_body_can_be_signed_and_verified() -> None:
    assert verify_github(b"", {"X-Hub-Signature-256": sign(b"", SECRET)}, [SECRET]).ok


# --- rotation --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("verify", "header"), [(verify_github, GH), (verify_bitbucket, BB)])
def test_during_rotation_both_old_and_new_secrets_are_valid(verify: HmacVerifier, header: str) -> None:
    old, new = b"old-secret", b"new-secret"
    assert verify(BODY, {header: sign(BODY, old)}, [old, new]).ok
    assert verify(BODY, {header: sign(BODY, new)}, [old, new]).ok
    assert verify(BODY, {header: sign(BODY, old)}, [new]) == VerifyResult(False, "signature does not match")


def test_during_rotation_both_gitlab_tokens_are_valid() -> None:
    new_sha = hashlib.sha256(b"new-token").hexdigest()
    assert verify_gitlab({"X-Gitlab-Token": TOKEN}, [TOKEN_SHA, new_sha]).ok
    assert verify_gitlab({"X-Gitlab-Token": "new-token"}, [TOKEN_SHA, new_sha]).ok
    assert not verify_gitlab({"X-Gitlab-Token": TOKEN}, [new_sha]).ok


def test_every_secret_is_compared_even_after_one_matched(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # signatures.py calls it through the module
    secrets = [SECRET, b"second", b"third"]
    assert verify_github(BODY, {"X-Hub-Signature-256": GOOD}, secrets).ok
    assert len(calls) == len(secrets)
    calls.clear()
    shas = [TOKEN_SHA, "a" * 64, "b" * 64]
    assert verify_gitlab({"X-Gitlab-Token": TOKEN}, shas).ok
    assert len(calls) == len(shas)


@pytest.mark.parametrize("secrets", [[], [b""]])
def test_no_configured_secret_refuses_everything(secrets: list[bytes]) -> None:
    result = verify_github(BODY, {"X-Hub-Signature-256": sign(BODY, b"")}, secrets)
    assert result == VerifyResult(False, "no webhook secret is configured for this project")
    assert not verify_bitbucket(BODY, {"X-Hub-Signature": sign(BODY, b"")}, secrets).ok


def test_empty_secret_in_the_list_is_ignored_not_trusted() -> None:
    assert not verify_github(BODY, {"X-Hub-Signature-256": sign(BODY, b"")}, [b"", SECRET]).ok
    assert verify_github(BODY, {"X-Hub-Signature-256": GOOD}, [b"", SECRET]).ok


def test_no_configured_gitlab_token_refuses_everything() -> None:
    result = verify_gitlab({"X-Gitlab-Token": TOKEN}, [])
    assert result == VerifyResult(False, "no webhook secret is configured for this project")
    assert not verify_gitlab({"X-Gitlab-Token": TOKEN}, [""]).ok


# --- forged ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Forgery:
    id: str
    provider: str
    headers: Mapping[str, str]
    reason: str
    body: bytes = BODY


_RESERIALISED = json.dumps(json.loads(BODY)).encode()  # same JSON, spaces after ':' and ','
assert _RESERIALISED != BODY

FORGERIES = [
    # GitHub
    Forgery("gh-missing", "github", {}, "missing X-Hub-Signature-256 header"),
    Forgery("gh-empty", "github", {GH: ""}, "X-Hub-Signature-256 is empty"),
    Forgery("gh-sha1-only", "github", {BB: _sha1(BODY, SECRET)}, "only the legacy sha1 signature was sent"),
    Forgery("gh-sha1-in-256-header", "github", {GH: _sha1(BODY, SECRET)}, "uses sha1"),
    Forgery("gh-wrong-algorithm", "github", {GH: "sha512=" + GOOD_HEX}, "does not start with 'sha256='"),
    Forgery("gh-no-prefix", "github", {GH: GOOD_HEX}, "does not start with 'sha256='"),
    Forgery("gh-upper-prefix", "github", {GH: "SHA256=" + GOOD_HEX}, "does not start with 'sha256='"),
    Forgery("gh-duplicate-prefix", "github", {GH: "sha256=" + GOOD}, "does not have 64 hex digits"),
    Forgery("gh-wrong-secret", "github", {GH: sign(BODY, OTHER_SECRET)}, "signature does not match"),
    Forgery("gh-truncated", "github", {GH: GOOD[:-1]}, "does not have 64 hex digits"),
    Forgery("gh-prefix-only", "github", {GH: "sha256="}, "does not have 64 hex digits"),
    Forgery("gh-one-digit-too-many", "github", {GH: GOOD + "0"}, "does not have 64 hex digits"),
    Forgery("gh-upper-case-hex", "github", {GH: "sha256=" + GOOD_HEX.upper()}, "is not lower-case hex"),
    Forgery("gh-garbage-hex", "github", {GH: "sha256=" + "z" * 64}, "is not lower-case hex"),
    Forgery("gh-unicode-digits", "github", {GH: "sha256=" + "\u0660" * 64}, "is not lower-case hex"),
    Forgery(
        "gh-base64-digest",
        "github",
        {GH: "sha256=" + base64.b64encode(bytes.fromhex(GOOD_HEX)).decode()},
        "does not have 64 hex digits",
    ),
    Forgery("gh-trailing-space", "github", {GH: GOOD + " "}, "does not have 64 hex digits"),
    Forgery("gh-leading-space", "github", {GH: " " + GOOD}, "does not start with 'sha256='"),
    Forgery("gh-space-after-equals", "github", {GH: "sha256= " + GOOD_HEX}, "does not have 64 hex digits"),
    Forgery("gh-trailing-newline", "github", {GH: GOOD + "\n"}, "does not have 64 hex digits"),
    Forgery(
        "gh-one-body-byte-changed",
        "github",
        {GH: GOOD},
        "signature does not match",
        body=BODY.replace(b"main", b"mair"),
    ),
    Forgery("gh-reserialised-json", "github", {GH: GOOD}, "signature does not match", body=_RESERIALISED),
    Forgery("gh-body-with-newline", "github", {GH: GOOD}, "signature does not match", body=BODY + b"\n"),
    Forgery("gh-empty-body", "github", {GH: GOOD}, "signature does not match", body=b""),
    Forgery(
        "gh-plain-sha256-not-hmac",
        "github",
        {GH: "sha256=" + hashlib.sha256(SECRET + BODY).hexdigest()},
        "signature does not match",
    ),
    Forgery("gh-secret-with-newline", "github", {GH: sign(BODY, SECRET + b"\n")}, "signature does not match"),
    Forgery(
        "gh-two-headers",
        "github",
        MultiHeaders([(GH, GOOD), (GH.lower(), sign(BODY, OTHER_SECRET))]),
        "more than one X-Hub-Signature-256 header",
    ),
    Forgery("gh-bitbucket-style-header", "github", {BB: GOOD}, "missing X-Hub-Signature-256 header"),
    # Bitbucket Cloud
    Forgery("bb-missing", "bitbucket", {}, "missing X-Hub-Signature header"),
    Forgery("bb-only-github-header", "bitbucket", {GH: GOOD}, "missing X-Hub-Signature header"),
    Forgery("bb-empty", "bitbucket", {BB: ""}, "X-Hub-Signature is empty"),
    Forgery("bb-sha1", "bitbucket", {BB: _sha1(BODY, SECRET)}, "uses sha1"),
    Forgery("bb-wrong-secret", "bitbucket", {BB: sign(BODY, OTHER_SECRET)}, "signature does not match"),
    Forgery("bb-truncated", "bitbucket", {BB: GOOD[:40]}, "does not have 64 hex digits"),
    Forgery("bb-upper-case-hex", "bitbucket", {BB: "sha256=" + GOOD_HEX.upper()}, "is not lower-case hex"),
    Forgery(
        "bb-one-body-byte-changed",
        "bitbucket",
        {BB: GOOD},
        "signature does not match",
        body=BODY.replace(b"octo", b"octa"),
    ),
    Forgery("bb-reserialised-json", "bitbucket", {BB: GOOD}, "signature does not match", body=_RESERIALISED),
    Forgery(
        "bb-two-headers",
        "bitbucket",
        MultiHeaders([(BB, sign(BODY, OTHER_SECRET)), (BB, GOOD)]),
        "more than one X-Hub-Signature header",
    ),
    # GitLab
    Forgery("gl-missing", "gitlab", {}, "missing X-Gitlab-Token header"),
    Forgery("gl-empty", "gitlab", {GL: ""}, "empty X-Gitlab-Token header"),
    Forgery("gl-wrong-token", "gitlab", {GL: "guess"}, "token does not match"),
    Forgery("gl-truncated-token", "gitlab", {GL: TOKEN[:-1]}, "token does not match"),
    Forgery("gl-trailing-space", "gitlab", {GL: TOKEN + " "}, "token does not match"),
    Forgery("gl-upper-cased-token", "gitlab", {GL: TOKEN.upper()}, "token does not match"),
    Forgery("gl-stored-digest-sent-as-token", "gitlab", {GL: TOKEN_SHA}, "token does not match"),
    Forgery("gl-hmac-instead-of-token", "gitlab", {GL: GOOD}, "token does not match"),
    Forgery(
        "gl-two-headers",
        "gitlab",
        MultiHeaders([(GL, "guess"), (GL, TOKEN)]),
        "more than one X-Gitlab-Token header",
    ),
]


def test_the_forgery_table_is_thorough() -> None:
    assert len(FORGERIES) >= 30
    assert len({f.id for f in FORGERIES}) == len(FORGERIES)
    assert {f.provider for f in FORGERIES} == {"github", "bitbucket", "gitlab"}


@pytest.mark.parametrize("forgery", FORGERIES, ids=[f.id for f in FORGERIES])
def test_forged_delivery_is_refused_with_a_precise_reason(forgery: Forgery) -> None:
    result = _verify(forgery.provider, forgery.body, forgery.headers)
    assert result.ok is False
    assert forgery.reason in result.reason
    assert SECRET.decode() not in result.reason
    assert TOKEN not in result.reason


# --- header lookup ---------------------------------------------------------------------------------


def test_header_values_finds_every_spelling_of_a_name() -> None:
    headers = MultiHeaders(
        [("X-Event-Key", "repo:push"), ("x-event-key", "pullrequest:created"), ("Other", "1")]
    )
    assert header_values(headers, "X-EVENT-KEY") == ["repo:push", "pullrequest:created"]
    assert header_values({"Other": "1"}, "X-Event-Key") == []
