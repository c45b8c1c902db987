"""Labels: `key=value` pairs a worker advertises (`comet worker --labels arch=arm64,gpu=a100`) and a
stage asks for (`labels: {arch: arm64}` in `.comet.yml`). One rule for both sides, so whatever a
stage can ask for, a worker can advertise (docs/decisions/0026).

Keys are letters, digits, `_`, `.`, `-` and `/` (`kubernetes.io/arch` style), starting with a
letter or digit, at most 63 characters; values the same without `/` rules on the first character,
at most 63 characters, possibly empty. Neither may hold `,` or `=` (the separators of the text form).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-/]{0,62}")
LABEL_VALUE = re.compile(r"[A-Za-z0-9_.\-/:+]{0,63}")
MAX_LABELS = 32


def check_label(key: str, value: str) -> None:
    """ValueError naming the bad key or value."""
    if not LABEL_KEY.fullmatch(key):
        raise ValueError(
            f"label key {key!r} is not valid (letters, digits, '_', '.', '-', '/'; at most 63 characters)"
        )
    if not LABEL_VALUE.fullmatch(value):
        raise ValueError(
            f"label value {value!r} of {key!r} is not valid "
            "(letters, digits, '_', '.', '-', '/', ':', '+'; at most 63 characters)"
        )


def check_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """`labels` as a plain dict, or ValueError naming the first bad key or value."""
    if len(labels) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} labels")
    for key, value in labels.items():
        check_label(key, value)
    return dict(labels)


def parse_labels(text: str) -> dict[str, str]:
    """`k=v,k2=v2` -> dict; ValueError naming the bad item."""
    labels: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"label {item!r} is not key=value")
        check_label(key.strip(), value.strip())
        labels[key.strip()] = value.strip()
    return check_labels(labels)


def describe(labels: Mapping[str, str]) -> str:
    """`arch=arm64,gpu=a100` (sorted by key), or "" for none."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
