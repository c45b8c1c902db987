"""Is a webhook delivery really from the provider? Checks on the raw body bytes, before any parsing.

- GitHub: `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256 of the body keyed with the secret.
  A delivery signed only with the legacy `X-Hub-Signature` (SHA-1) is refused.
- Bitbucket Cloud: `X-Hub-Signature: sha256=<hex>`, the same HMAC-SHA256 scheme.
- GitLab: `X-Gitlab-Token` carries the secret token itself; we keep only its SHA-256 hex digest
  and compare digests.

Only the exact form the providers send is accepted: the `sha256=` prefix in lower case followed by
exactly 64 lower-case hex digits, no whitespace, one header. GitHub and Bitbucket both send
lower-case hex, so upper-case is refused rather than normalised: a value nobody legitimate sends is
a forgery or a broken proxy, and either way it should be seen, not smoothed over.

Several secrets may be valid at once (rotation overlap). Every one of them is compared, in constant
time, whether or not an earlier one matched, so the time taken does not say which secret matched.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

GITHUB_SIGNATURE_HEADER = "X-Hub-Signature-256"
GITHUB_LEGACY_SIGNATURE_HEADER = "X-Hub-Signature"
BITBUCKET_SIGNATURE_HEADER = "X-Hub-Signature"
GITLAB_TOKEN_HEADER = "X-Gitlab-Token"

_PREFIX = "sha256="
_HEX_DIGITS = 64
_LOWER_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class VerifyResult:
    """The verdict and, for people and logs, why. The reason never contains a secret."""

    ok: bool
    reason: str


def header_values(headers: Mapping[str, str], name: str) -> list[str]:
    """Every value of the header `name`, whatever the case of its name in `headers`.

    Works with a plain dict and with multi-valued mappings whose `items()` repeats a name (such as
    Starlette's `Headers`), so a header sent twice is seen twice and can be refused as ambiguous.
    """
    wanted = name.lower()
    return [value for key, value in headers.items() if key.lower() == wanted]


def verify_github(body: bytes, headers: Mapping[str, str], secrets: Sequence[bytes]) -> VerifyResult:
    """Check `X-Hub-Signature-256` against the HMAC-SHA256 of `body` under any of `secrets`."""
    values = header_values(headers, GITHUB_SIGNATURE_HEADER)
    if not values:
        legacy = header_values(headers, GITHUB_LEGACY_SIGNATURE_HEADER)
        if any(value.lower().startswith("sha1=") for value in legacy):
            return _refused("only the legacy sha1 signature was sent; configure SHA-256")
        return _refused(f"missing {GITHUB_SIGNATURE_HEADER} header")
    return _verify_hmac(body, values, secrets, GITHUB_SIGNATURE_HEADER)


def verify_bitbucket(body: bytes, headers: Mapping[str, str], secrets: Sequence[bytes]) -> VerifyResult:
    """Check Bitbucket Cloud's `X-Hub-Signature` against the HMAC-SHA256 of `body` under any of `secrets`.

    Bitbucket sends no signature header for a webhook configured without a secret: such a delivery
    is refused like any other unsigned one.
    """
    values = header_values(headers, BITBUCKET_SIGNATURE_HEADER)
    if not values:
        return _refused(f"missing {BITBUCKET_SIGNATURE_HEADER} header")
    return _verify_hmac(body, values, secrets, BITBUCKET_SIGNATURE_HEADER)


def verify_gitlab(headers: Mapping[str, str], token_sha256s: Sequence[str]) -> VerifyResult:
    """Check `X-Gitlab-Token`: its SHA-256 hex digest must equal one of `token_sha256s`."""
    values = header_values(headers, GITLAB_TOKEN_HEADER)
    if not values:
        return _refused(f"missing {GITLAB_TOKEN_HEADER} header")
    if len(values) > 1:
        return _refused(f"more than one {GITLAB_TOKEN_HEADER} header")
    if not values[0]:
        return _refused(f"empty {GITLAB_TOKEN_HEADER} header")
    stored = [digest.lower().encode() for digest in token_sha256s if digest]
    if not stored:
        return _refused("no webhook secret is configured for this project")
    given = hashlib.sha256(values[0].encode()).hexdigest().encode()
    matched = False
    for digest in stored:
        matched |= hmac.compare_digest(given, digest)
    if matched:
        return VerifyResult(True, "token matches")
    return _refused("token does not match")


def sign(body: bytes, secret: bytes) -> str:
    """The header value a provider sends for `body`: `sha256=<lower-case hex HMAC-SHA256>`.

    For tests and for re-signing a stored delivery; never used to check a signature by equality.
    """
    return _PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def _verify_hmac(body: bytes, values: list[str], secrets: Sequence[bytes], header: str) -> VerifyResult:
    if len(values) > 1:
        return _refused(f"more than one {header} header")
    value = values[0]
    problem = _format_problem(value)
    if problem:
        return _refused(f"{header} {problem}")
    keys = [secret for secret in secrets if secret]  # an empty key would be no secret at all
    if not keys:
        return _refused("no webhook secret is configured for this project")
    given = value.encode("ascii")  # _format_problem made sure it is ASCII
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(sign(body, key).encode("ascii"), given)
    if matched:
        return VerifyResult(True, "signature matches")
    return _refused("signature does not match")


def _format_problem(value: str) -> str:
    """Why `value` is not `sha256=` + 64 lower-case hex digits, or "" when it is."""
    if not value:
        return "is empty"
    if not value.startswith(_PREFIX):
        algorithm = value.partition("=")[0]
        if "=" in value and algorithm.lower() == "sha1":
            return "uses sha1; only sha256 is accepted"
        return f"does not start with {_PREFIX!r}"
    digest = value[len(_PREFIX) :]
    if len(digest) != _HEX_DIGITS:
        return f"does not have {_HEX_DIGITS} hex digits after {_PREFIX!r}"
    if not _LOWER_HEX.fullmatch(digest):
        return "is not lower-case hex after 'sha256='"
    return ""


def _refused(reason: str) -> VerifyResult:
    return VerifyResult(False, reason)
