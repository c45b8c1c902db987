"""Deployment statuses and environment names (decision 0027)."""

from __future__ import annotations

import re
from typing import Final

# waiting → queued → in_progress → succeeded | failed | cancelled, and rejected (at its gate).
DEPLOYMENT_STATUSES: Final = (
    "waiting",
    "queued",
    "in_progress",
    "succeeded",
    "failed",
    "cancelled",
    "rejected",
)
DEPLOYMENT_OPEN: Final = frozenset({"waiting", "queued", "in_progress"})
DEPLOYMENT_ACTIVE: Final = frozenset({"queued", "in_progress"})
DEPLOYMENT_TERMINAL: Final = frozenset({"succeeded", "failed", "cancelled", "rejected"})

# Letters, digits, `.`, `_`, `-`; starting with a letter or digit: no path characters, ever.
ENVIRONMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
ENVIRONMENT_NAME_RULE = (
    "1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit (no '/' or other "
    "path characters)"
)


def valid_environment_name(name: str) -> bool:
    return ENVIRONMENT_NAME.fullmatch(name) is not None
