"""Secret masking holds for every seeded case: each secret printed as it is, split across log
chunks, JSON-escaped, URL-encoded and base64-encoded (alone, inside a longer encoded text at every
alignment, and in a Basic Authorization header) never leaves the worker in a readable form.

The check is independent of how the masker finds its forms: after masking, no text of the output
holds the secret, and no run of base64 characters in it decodes (at any alignment) to bytes that
hold it.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import re
import string
from urllib.parse import quote, quote_plus

import pytest

from workers.masking import SecretMasker, secret_forms

_B64_RUN = re.compile(r"[A-Za-z0-9+/\-_]{4,}")
SEEDS = range(100)


def _secret(rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits + "+/=&?%\"\\'$ :@#!é€"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(8, 40)))


def _leaks(output: str, secret: str) -> list[str]:
    raw = secret.encode()
    found = [
        form
        for form in (secret, json.dumps(secret)[1:-1], quote(secret, safe=""), quote_plus(secret))
        if form in output
    ]
    for run in _B64_RUN.findall(output):
        normal = run.replace("-", "+").replace("_", "/")
        for skip in range(4):
            chunk = normal[skip:]
            chunk = chunk[: len(chunk) // 4 * 4]
            try:
                decoded = base64.b64decode(chunk, validate=True)
            except (binascii.Error, ValueError):
                continue
            if raw in decoded:
                found.append(f"base64 {run!r}")
    return found


def _lines(rng: random.Random, secret: str) -> list[str]:
    raw = secret.encode()
    pad = "".join(rng.choice(string.ascii_letters) for _ in range(rng.randint(0, 5)))
    basic = base64.b64encode(b"user:" + raw).decode()
    return [
        f"plain {secret} done",
        f"twice {secret}{secret}",
        json.dumps({"token": secret, "n": 1}),
        json.dumps({"token": secret}, ensure_ascii=False),
        f"GET https://example.com/api?key={quote(secret, safe='')}&x=1",
        f"POST body a={quote_plus(secret)}",
        f"b64 {base64.b64encode(raw).decode()}",
        f"urlsafe {base64.urlsafe_b64encode(pad.encode() + raw).decode()}",
        f"wrapped {base64.b64encode(pad.encode() + raw + b'tail').decode()}",
        f"Authorization: Basic {basic}",
    ]


def _chunks(rng: random.Random, text: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        size = rng.randint(1, 12)
        out.append(text[pos : pos + size])
        pos += size
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_a_seeded_secret_never_leaves_in_any_form_whatever_the_chunking(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - seeded test data, not cryptography
    secret, other = _secret(rng), _secret(rng)
    text = "\n".join(_lines(rng, secret) + _lines(rng, other)) + "\n"
    masker = SecretMasker([secret, other])
    output = "".join(masker.feed(chunk) for chunk in _chunks(rng, text)) + masker.flush()
    assert _leaks(output, secret) == []
    assert _leaks(output, other) == []
    assert "plain *** done" in output


def test_the_secret_s_forms_are_the_ones_a_log_shows() -> None:
    forms = secret_forms('p@ss "w/rd"+€')
    assert 'p@ss \\"w/rd\\"+\\u20ac' in forms  # JSON, ASCII-escaped
    assert 'p@ss \\"w/rd\\"+€' in forms  # JSON, as written
    assert "p%40ss%20%22w%2Frd%22%2B%E2%82%AC" in forms  # percent-encoded
    assert "p%40ss+%22w%2Frd%22%2B%E2%82%AC" in forms  # form-encoded
    assert base64.b64encode('p@ss "w/rd"+€'.encode()).decode() in forms  # 15 bytes: 20 characters


def test_short_encoded_forms_are_not_masked_on_their_own_so_ordinary_text_survives() -> None:
    assert all(len(form) >= 8 for form in secret_forms("abc") - {"abc"})
    masker = SecretMasker(["abc"])
    assert (
        masker.feed("YWJj is base64 of it, abc is not shown") + masker.flush()
        == "YWJj is base64 of it, *** is not shown"
    )
