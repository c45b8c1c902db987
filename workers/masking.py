"""Secret masking for streamed stage logs, and the incremental UTF-8 decoder in front of it.

A stage's output arrives in arbitrary chunks, so a secret can be split across two or more of
them. `SecretMasker` holds back only the trailing characters that could still grow into a
secret, and replaces every occurrence of every secret (overlapping ones merged into one
`***`) before anything leaves the worker.

A script rarely prints a secret only as it is: it logs a JSON body, a URL or an Authorization
header. So each secret is masked in the forms it takes there too (`secret_forms`): JSON-escaped,
URL-encoded (percent and form encoding) and base64 (standard and URL-safe alphabets) at any of
the three byte alignments it can have inside a longer encoded text.
"""

from __future__ import annotations

import base64
import codecs
import json
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = "***"
# Shorter values would mask ordinary text everywhere ("1", "on") and leak more than they hide.
MIN_SECRET_LEN = 3
# An encoded form shorter than this is not masked on its own: a few base64 characters occur in
# ordinary text by chance. (The secret itself is still masked from MIN_SECRET_LEN.)
MIN_ENCODED_LEN = 8


def secret_forms(secret: str) -> set[str]:
    """`secret` and the encoded forms of it a log may hold, each long enough to mask."""
    forms = {secret}
    forms.add(json.dumps(secret)[1:-1])
    forms.add(json.dumps(secret, ensure_ascii=False)[1:-1])
    forms.add(quote(secret, safe=""))
    forms.add(quote(secret))
    forms.add(quote_plus(secret))
    raw = secret.encode()
    for offset in range(3):
        # Inside a longer base64 text the secret starts at byte `offset` of a 3-byte group: only
        # the characters made of its bits alone are the same whatever surrounds it.
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        first = -(-offset * 8 // 6)  # characters still holding bits of the bytes before
        last = (offset + len(raw)) * 8 // 6  # characters after this hold bits of the bytes after
        middle = encoded[first:last]
        forms.add(middle)
        forms.add(middle.translate(_URLSAFE))
    return {form for form in forms if form == secret or len(form) >= MIN_ENCODED_LEN}


_URLSAFE = str.maketrans("+/", "-_")


class IncrementalLogDecoder:
    """Bytes -> str across chunks: a character split between chunks survives, bad bytes become U+FFFD."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def decode(self, data: bytes, final: bool = False) -> str:
        return self._decoder.decode(data, final)

    def flush(self) -> str:
        """The rest of an incomplete character at the end of the stream (as U+FFFD)."""
        return self._decoder.decode(b"", final=True)


class SecretMasker:
    """Streaming masker: `feed` chunks, emit what it returns, then emit `flush()` at the end."""

    def __init__(self, secrets: Iterable[str]) -> None:
        unique = {
            form for secret in secrets if len(secret) >= MIN_SECRET_LEN for form in secret_forms(secret)
        }
        self._secrets = sorted(unique, key=len, reverse=True)
        self._max_len = len(self._secrets[0]) if self._secrets else 0
        self._pending = ""
        # Leading characters of `_pending` already inside a mask whose `***` was emitted.
        self._covered = 0
        # The last emitted text ended with `***`: a secret right after it joins that mask.
        self._mask_open = False

    @property
    def max_len(self) -> int:
        return self._max_len

    def feed(self, text: str) -> str:
        if not self._secrets:
            return text
        self._pending += text
        return self._emit(self._hold_point(self._pending))

    def flush(self) -> str:
        if not self._secrets:
            return ""
        rest = self._emit(len(self._pending))
        self._pending, self._covered, self._mask_open = "", 0, False
        return rest

    def _emit(self, cut: int) -> str:
        if cut == 0:
            # Nothing can leave yet; the state still describes the start of `_pending`.
            return ""
        buf = self._pending
        out: list[str] = []
        pos = 0
        covered = 0
        mask_open = False
        for start, end in _merge(self._find(buf)):
            if start >= cut:
                break
            out.append(buf[pos:start])
            # A span touching 0 continues the `***` that ended the previous emission.
            if not (start == 0 and self._mask_open):
                out.append(MASK)
            pos = min(end, cut)
            covered = max(0, end - cut)
            mask_open = end >= cut
        out.append(buf[pos:cut])
        self._pending = buf[cut:]
        self._covered = covered
        self._mask_open = mask_open
        return "".join(out)

    def _find(self, buf: str) -> list[tuple[int, int]]:
        spans = [(0, self._covered)] if self._covered else []
        for secret in self._secrets:
            index = buf.find(secret)
            while index != -1:
                spans.append((index, index + len(secret)))
                index = buf.find(secret, index + 1)
        return spans

    def _hold_point(self, buf: str) -> int:
        """The earliest index from which the rest of `buf` could still become a secret."""
        size = len(buf)
        lowest = max(0, size - (self._max_len - 1))
        hold = size
        for secret in self._secrets:
            index = buf.find(secret[0], lowest, hold)
            while index != -1:
                if secret.startswith(buf[index:]) and size - index < len(secret):
                    hold = index
                    break
                index = buf.find(secret[0], index + 1, hold)
        return hold


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
